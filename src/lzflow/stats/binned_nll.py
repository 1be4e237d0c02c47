"""The binned NLL of a set of toys, in the fitter's dense/sparse representation.

Bins are split once per model into *dense* bins (nominal expectation above
``FitConfig.dense_threshold``; BLAS matrix products over all toys of a block) and *sparse* bins
(nearly empty: their few non-zero counts are handled entry by entry with CSR products). Bins
with n_i = 0 contribute only ``Σ_i ν_i`` — a linear term — so no per-toy work is spent on empty
sparse bins. The dense part of the Hessians Σ w_i x_i x_iᵀ is one product ``W @ P`` with the
precomputed pair products P (optionally in single precision, see
:class:`lzflow.stats.fitresult.FitConfig`). Work arrays are allocated once per block.

* :class:`PreparedData` — counts and auxiliary values of toys in that representation;
* :class:`Layout` — the free-parameter design of one fit type (μ free or fixed);
* :class:`BinnedRows` — NLL, gradient and Hessians of a set of toys for the projected-Newton
  engine (:class:`lzflow.stats.newton.NewtonRows`).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._linalg import unpack_symmetric

__all__ = ["PreparedData", "Layout", "make_layout", "BinnedRows", "PointRows"]


@dataclass
class Layout:
    """Free-parameter design for one fit type (μ free, or μ fixed)."""

    cols: np.ndarray  # indices into the full parameter vector of the free parameters
    XDt: np.ndarray  # (p, D) dense-bin templates of the free parameters
    XS: np.ndarray  # (nS, p) sparse-bin templates
    PD: np.ndarray  # (D, p(p+1)/2) products x_j x_k for the Hessian
    PD32: np.ndarray | None  # float32 copy (Hessian products in single precision)
    iu: np.ndarray
    ju: np.ndarray
    tvec: np.ndarray  # (p,) Σ_i x_i
    prec: np.ndarray  # (p,) constraint precisions (0 for μ)

    @property
    def p(self) -> int:
        return int(self.cols.size)


def make_layout(templates: np.ndarray, cols: np.ndarray, dense_bins: np.ndarray,
                sparse_bins: np.ndarray, full_prec: np.ndarray, hessian_float32: bool) -> Layout:
    """Layout of the free parameters ``cols`` of the stacked ``templates`` ``(n_par, n_bins)``."""
    X = templates[cols].T  # (n_bins, p)
    XD = X[dense_bins]
    iu, ju = np.triu_indices(cols.size)
    return Layout(
        cols=cols,
        XDt=np.ascontiguousarray(XD.T),
        XS=np.ascontiguousarray(X[sparse_bins]),
        PD=np.ascontiguousarray(XD[:, iu] * XD[:, ju]),
        PD32=(np.ascontiguousarray(XD[:, iu] * XD[:, ju], dtype=np.float32)
              if hessian_float32 else None),
        iu=iu, ju=ju, tvec=X.sum(axis=0), prec=full_prec[cols],
    )


@dataclass
class PreparedData:
    """Counts/aux of a set of toys in the fitter's split (dense/sparse bins) representation."""

    n: int
    nD: np.ndarray  # (n, D) float64 counts in dense bins
    e_toy: np.ndarray  # (E,) toy of each non-zero sparse entry (sorted)
    e_bin: np.ndarray  # (E,) sparse-bin index
    e_n: np.ndarray  # (E,) count
    aux: np.ndarray  # (n, n_bkg) auxiliary observables (multiplier scale)
    valid: np.ndarray  # (n,) finite, non-negative input
    total: np.ndarray  # (n,) total count

    def slice(self, start: int, stop: int) -> "PreparedData":
        """Toys ``start:stop`` (cost independent of the total number of toys)."""
        a, b = np.searchsorted(self.e_toy, [start, stop])
        return PreparedData(
            n=stop - start, nD=self.nD[start:stop], e_toy=self.e_toy[a:b] - start,
            e_bin=self.e_bin[a:b], e_n=self.e_n[a:b], aux=self.aux[start:stop],
            valid=self.valid[start:stop], total=self.total[start:stop],
        )

    def subset(self, idx: np.ndarray) -> "PreparedData":
        """Toys ``idx`` (any order)."""
        idx = np.asarray(idx)
        keep = np.zeros(self.n, dtype=bool)
        keep[idx] = True
        m = keep[self.e_toy]
        remap = np.full(self.n, -1)
        remap[idx] = np.arange(idx.size)
        e_toy = remap[self.e_toy[m]]
        order = np.argsort(e_toy, kind="stable")
        return PreparedData(
            n=int(idx.size), nD=self.nD[idx], e_toy=e_toy[order], e_bin=self.e_bin[m][order],
            e_n=self.e_n[m][order], aux=self.aux[idx], valid=self.valid[idx],
            total=self.total[idx],
        )


class PointRows:
    """The :class:`~lzflow.stats.newton.NewtonRows` bookkeeping shared by rows that keep their
    current and trial parameter points as objects made by :meth:`point` (ν and whatever the
    derivatives need) and evaluate ``nll(y, pt)``, ``gradient(y, pt) -> (g, ratios)`` and
    ``hessian(pt, ratios, rows)`` (the morphed models, :mod:`lzflow.stats.morph_nll` and
    :mod:`lzflow.stats.logmorph_nll`)."""

    cur: Any = None
    trial_pt: Any = None
    ratios: tuple | None = None

    def point(self, y: np.ndarray) -> Any:
        """The point object of parameter rows ``y``."""
        raise NotImplementedError

    def start(self, y: np.ndarray) -> np.ndarray:
        self.cur = self.point(y)
        return self.nll(y, self.cur)

    def grad(self, y: np.ndarray) -> np.ndarray:
        g, self.ratios = self.gradient(y, self.cur)
        return g

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        return self.hessian(self.cur, self.ratios, rows)

    def trial(self, y: np.ndarray) -> np.ndarray:
        self.trial_pt = self.point(y)
        return self.nll(y, self.trial_pt)

    def advance(self) -> None:
        self.cur, self.trial_pt = self.trial_pt, None


class _Buffers:
    """Work arrays ``(n_max, D)`` reused across iterations (sliced to the active rows), so the
    iteration does not allocate — and page-fault in — fresh multi-MB temporaries each time."""

    def __init__(self, n: int, d: int, f32: bool):
        wt = np.float32 if f32 else np.float64
        self.nu = np.empty((n, d))  # spare ν buffer (candidate points)
        self.tmp = np.empty((n, d))  # logs; compacted ratios
        self.r = np.empty((n, d))  # n/ν
        self.w = np.empty((n, d), dtype=wt)  # n/ν²
        self.w2 = np.empty((n, d), dtype=wt)  # n/ν² of a row subset
        self.nd = (np.empty((n, d)), np.empty((n, d)))  # ping-pong targets for compacted counts


class BinnedRows:
    """NLL, gradient and Hessian for a set of toys ("rows") under one layout and fixed offset
    (a :class:`lzflow.stats.newton.NewtonRows`).

    Dense bins are arrays ``(n, D)``; ν there is one matrix product with the free templates
    augmented by the fixed offset (``[y, 1] @ [X; c]``). Sparse-bin entries are stored
    row-sorted (``e_row``). ν at the current point (``nuD``, ``nue``) and at the trial points
    live in work buffers: the trial points go into the spare ν buffer, swapped with the current
    one on :meth:`advance`; compacted counts go into ping-pong buffers.
    """

    def __init__(self, lay: Layout, nD, e_row, e_n, Xe, Pe, ce, aux_c, XDa, const, bufs,
                 nd_slot: int = -1):
        self.nd_slot = nd_slot  # which ping-pong buffer holds nD (-1: not a buffer)
        self.lay, self.nD, self.e_row, self.e_n = lay, nD, e_row, e_n
        self.Xe, self.Pe, self.ce, self.aux_c, self.XDa, self.const = Xe, Pe, ce, aux_c, XDa, const
        self.n = nD.shape[0]
        self.has_entries = e_row.size > 0
        self.bufs = bufs
        self.XDT = XDa[:-1].T
        self._sel = None
        self.nuD = self.nue = self.spare = None  # ν at the current point; spare ν buffer
        self.r = self.re = None  # ratios n/ν of the last gradient (dense, entries)
        self.trial_nu: tuple[np.ndarray, np.ndarray] | None = None  # ν at the trial points
        self.parent_rows = self.parent_entries = None  # of a subset: rows/entries in the parent

    @classmethod
    def build(cls, lay: Layout, data: PreparedData, offset: np.ndarray, dense_bins: np.ndarray,
              sparse_bins: np.ndarray) -> "BinnedRows":
        """Rows of every toy of ``data``; ``offset``: ``(n_bins,)`` fixed part of ν."""
        cS = offset[sparse_bins]
        Xe = lay.XS[data.e_bin]
        aux_c = np.zeros((data.n, lay.p))
        bkg_cols = lay.cols > 0
        aux_c[:, bkg_cols] = data.aux[:, lay.cols[bkg_cols] - 1]
        XDa = np.vstack([lay.XDt, offset[dense_bins][None, :]])
        bufs = _Buffers(data.n, data.nD.shape[1], lay.PD32 is not None)
        return cls(
            lay, data.nD, data.e_toy, data.e_n, Xe, Xe[:, lay.iu] * Xe[:, lay.ju], cS[data.e_bin],
            aux_c, XDa, float(offset.sum()), bufs,
        )

    def segsum(self, weights: np.ndarray, M: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Σ over the sparse entries of each row of ``weights[e] · M[e]`` → ``(n, M.shape[1])``
        (a CSR product; ``rows``: restrict to the rows of this boolean mask)."""
        if rows is None:
            if self._sel is None:
                indptr = np.searchsorted(self.e_row, np.arange(self.n + 1))
                self._sel = sp.csr_matrix(
                    (np.ones(self.e_row.size), np.arange(self.e_row.size), indptr),
                    shape=(self.n, self.e_row.size),
                )
            self._sel.data = np.ascontiguousarray(weights, dtype=np.float64)
            return np.asarray(self._sel @ M)
        em = self.entry_mask(rows)
        k = int(rows.sum())
        e_row = (np.cumsum(rows) - 1)[self.e_row[em]]
        indptr = np.searchsorted(e_row, np.arange(k + 1))
        sel = sp.csr_matrix((np.asarray(weights, float)[em], np.arange(e_row.size), indptr),
                            shape=(k, e_row.size))
        return np.asarray(sel @ M[em])

    def entry_mask(self, keep: np.ndarray) -> np.ndarray:
        """Boolean mask over entries belonging to rows with ``keep`` True."""
        return keep[self.e_row]

    def _entries_of(self, keep: np.ndarray) -> tuple:
        """Sparse entries of the kept rows, with row indices renumbered to the kept order."""
        if not self.has_entries:
            return (self.e_row, self.e_n, self.Xe, self.Pe, self.ce)
        em = self.entry_mask(keep)
        remap = np.cumsum(keep) - 1
        return (remap[self.e_row[em]], self.e_n[em], self.Xe[em], self.Pe[em], self.ce[em])

    def infeasible(self) -> np.ndarray:
        """Rows with counts in a bin that no free parameter nor the fixed part can fill."""
        out = np.zeros(self.n, dtype=bool)
        dead_dense = ~np.any(self.XDa > 0, axis=0)
        if dead_dense.any():
            out |= np.any(self.nD[:, dead_dense] > 0, axis=1)
        if self.has_entries:
            dead_entry = ~(np.any(self.Xe > 0, axis=1) | (self.ce > 0))
            if dead_entry.any():
                out[self.e_row[dead_entry]] = True
        return out

    def subset(self, keep: np.ndarray) -> "BinnedRows":
        """Rows where the boolean ``keep`` is True (order preserved), without ν; they share the
        work buffers (only the logs of :meth:`nll` go there) and remember their parent rows and
        entries (:meth:`take_trial`)."""
        e = self._entries_of(keep)
        sub = BinnedRows(self.lay, self.nD[keep], *e, self.aux_c[keep], self.XDa, self.const,
                         self.bufs)
        sub.parent_rows = np.flatnonzero(keep)
        sub.parent_entries = np.flatnonzero(self.entry_mask(keep))
        return sub

    def compact(self, keep: np.ndarray, ratios: bool) -> None:
        """Drop the rows where ``keep`` is False. Counts and ν at the current point are
        compacted into work buffers (no allocation); the ratios (if ``ratios``) into ``tmp``.

        While trial points are held, their ν is compacted first: the compacted current ν is then
        written into the spare buffer, which holds the trial ν (compacting in the other order gave
        the surviving rows the current ν of other rows, in blocks where some line search failed).
        """
        k = int(keep.sum())
        em = self.entry_mask(keep)
        slot = 1 if self.nd_slot == 0 else 0
        self.nD = np.compress(keep, self.nD, axis=0, out=self.bufs.nd[slot][:k])
        self.nd_slot = slot
        self.e_row, self.e_n, self.Xe, self.Pe, self.ce = self._entries_of(keep)
        self.aux_c = self.aux_c[keep]
        self.n = k
        self.has_entries = self.e_row.size > 0
        self._sel = None
        if self.trial_nu is not None:  # copies, taken before the spare buffer they live in is reused
            nuDc, nuec = self.trial_nu
            self.trial_nu = (nuDc[keep], nuec[em])
        nu_new = np.compress(keep, self.nuD, axis=0, out=self.spare[:k])
        self.spare, self.nuD = self.nuD, nu_new
        self.nue = self.nue[em]
        if ratios:
            tmp = self.bufs.tmp
            self.r = (self.r[keep] if np.shares_memory(self.r, tmp)
                      else np.compress(keep, self.r, axis=0, out=tmp[:k]))
            self.re = self.re[em]

    # ------------------------------------------------------------------ NewtonRows
    def start(self, y: np.ndarray) -> np.ndarray:
        """Make ``y`` the current point; NLL there."""
        self.nuD, self.nue = self.nu(y)
        self.spare = self.bufs.nu
        return self.nll(y, self.nuD, self.nue)

    def grad(self, y: np.ndarray) -> np.ndarray:
        """Gradient at the current point ``y`` (keeps the ratios for :meth:`hess`)."""
        g, self.r, self.re = self.gradient(y, self.nuD, self.nue)
        return g

    def hess(self, rows: np.ndarray | None) -> np.ndarray:
        """Hessians at the point of the last :meth:`grad` (all rows, or the mask ``rows``)."""
        return self.hessian(self.r, self.re, self.nuD, self.nue, rows)

    def trial(self, y: np.ndarray) -> np.ndarray:
        """NLL at the trial points ``y``; their ν goes into the spare buffer (if any)."""
        out = None if self.spare is None else self.spare[: self.n]
        self.trial_nu = self.nu(y, out=out)
        return self.nll(y, *self.trial_nu)

    def take_trial(self, sub: "BinnedRows", ok: np.ndarray) -> None:
        """Trial ν of the rows ``ok`` of ``sub`` (a :meth:`subset` of these rows)."""
        nuDc, nuec = self.trial_nu
        nuDc[sub.parent_rows[ok]] = sub.trial_nu[0][ok]
        if sub.has_entries:
            e_ok = sub.entry_mask(ok)
            nuec[sub.parent_entries[e_ok]] = sub.trial_nu[1][e_ok]

    def advance(self) -> None:
        """The trial points become the current points (the old ν array becomes the spare)."""
        self.spare = self.nuD
        self.nuD, self.nue = self.trial_nu
        self.trial_nu = None

    # ------------------------------------------------------------------ maths
    def nu(self, y: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ν in dense bins ``(n, D)`` (into ``out`` if given) and at the sparse entries ``(E,)``."""
        p = y.shape[1]
        ya = np.empty((y.shape[0], p + 1))
        ya[:, :p] = y
        ya[:, p] = 1.0
        nuD = np.matmul(ya, self.XDa, out=out)
        if self.has_entries:
            nue = np.einsum("ep,ep->e", self.Xe, y[self.e_row]) + self.ce
        else:
            nue = np.empty(0)
        return nuD, nue

    def nll(self, y: np.ndarray, nuD: np.ndarray, nue: np.ndarray) -> np.ndarray:
        """Per-row NLL (+inf where ν ≤ 0 in a bin with n > 0)."""
        nD = self.nD
        with np.errstate(divide="ignore", invalid="ignore"):
            tD = np.vecdot(nD, np.log(nuD, out=self.bufs.tmp[: self.n]))
            bad = ~np.isfinite(tD)
            if bad.any():  # ν ≤ 0 somewhere: 0·ln(·) = 0, but ν ≤ 0 with n > 0 → NLL = +inf
                nb, vb = nD[bad], nuD[bad]
                pos = nb > 0
                infeasible = np.any(pos & ~(vb > 0), axis=1)
                safe = np.where(pos & (vb > 0), vb, 1.0)
                tD[bad] = np.where(infeasible, -np.inf, np.sum(nb * np.log(safe), axis=1))
            if self.has_entries:
                le = np.where(nue > 0, np.log(np.where(nue > 0, nue, 1.0)), -np.inf)
                tD += np.bincount(self.e_row, weights=self.e_n * le, minlength=self.n)
        cons = 0.5 * (((y - self.aux_c) ** 2) @ self.lay.prec)
        lin = y @ self.lay.tvec + self.const
        return lin - tD + cons

    def gradient(self, y: np.ndarray, nuD: np.ndarray, nue: np.ndarray):
        """Gradient ``(n, p)`` plus the ratios ``r = n/ν`` (dense, entries) for :meth:`hess`.

        ``r`` lives in a shared work buffer: valid until the next call of :meth:`gradient`."""
        lay = self.lay
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.divide(self.nD, nuD, out=self.bufs.r[: self.n])
            g = r @ self.XDT
            re = self.e_n / nue if self.has_entries else nue
            if self.has_entries:
                g += self.segsum(re, self.Xe)
            bad = ~np.isfinite(g).all(axis=1)
            if bad.any():  # 0/0 in bins with n = ν = 0 contributes 0
                r[bad] = np.where(self.nD[bad] > 0, r[bad], 0.0)
                g[bad] = r[bad] @ self.XDT
                if self.has_entries:
                    g[bad] += self.segsum(re, self.Xe)[bad]
        g = lay.tvec - g
        g += lay.prec * (y - self.aux_c)
        return g, r, re

    def hessian(
        self, r: np.ndarray, re: np.ndarray, nuD: np.ndarray, nue: np.ndarray,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Hessians ``(p, p, k)`` (toy-last) from the ratios of :meth:`gradient`, for all rows or
        for the rows selected by the boolean mask ``rows``."""
        lay = self.lay
        nD, nrow = self.nD, self.n
        PD = lay.PD if lay.PD32 is None else lay.PD32
        with np.errstate(divide="ignore", invalid="ignore"):
            # w = n/ν² (single precision if configured: it only steers the direction)
            w = np.divide(r, nuD, out=self.bufs.w[:nrow], casting="same_kind")
            if rows is not None:
                nrow = int(rows.sum())
                w = np.compress(rows, w, axis=0, out=self.bufs.w2[:nrow])
                nD = nD[rows]
            hf = (w @ PD).astype(np.float64, copy=False)
            we = re / nue if self.has_entries else None
            if self.has_entries:
                hf += self.segsum(we, self.Pe, rows)
            bad = ~np.isfinite(hf).all(axis=1)
            if bad.any():
                wb = np.where(nD[bad] > 0, w[bad], 0.0).astype(PD.dtype)
                hf[bad] = wb @ PD
                if self.has_entries:
                    we = np.where(self.e_n > 0, we, 0.0)
                    hf[bad] += self.segsum(we, self.Pe, rows)[bad]
        h = unpack_symmetric(hf, lay.iu, lay.ju, lay.p)  # (p, p, n)
        idx = np.arange(lay.p)
        h[idx, idx] += lay.prec[:, None]
        return h
