"""2D histogram densities interpolated between bin centres (RooHistPdf ``intOrder`` 0–3).

What is interpolated
--------------------
A histogram with contents ``h_ij`` (expected events) on the edges ``x_0 < … < x_M`` and
``y_0 < … < y_K`` is turned into a density *per unit area*: the node values are
``d_ij = h_ij / (Δx_i Δy_j)`` at the bin centres ``(ξ_i, η_j)``, as in ROOT's
``RooHistPdf`` (``RooDataHist::weight(…, intOrder, correctForBinSize=true)``). This is
interpolation in *observable space*, not template morphing (``docs/method.md``, section
"Statistics conventions", "Interpolation order").

Order N (ROOT: ``RooDataHist::interpolateDim`` for one axis, applied along ``y`` for each of
the N + 1 stencil rows of ``x`` in ``RooDataHist::weightInterpolated`` — a tensor product)::

    P(x, y) = Σ_{a,b=0..N} ℓ_a(x) ℓ_b(y) d_{i_a j_b},     ℓ_a(x) = Π_{c≠a} (x − t_c)/(t_a − t_c)

with ``ℓ`` the Lagrange basis on the stencil nodes ``t`` of each axis (ROOT evaluates the same
polynomial with Neville's algorithm, ``RooMath::interpolate``; results agree to rounding).

* **Order 0** is the bin value (ROOT returns the bin weight without interpolation).
* **Stencil** (ROOT's rule): with ``j`` the index of the largest bin centre ≤ x (−1 left of the
  first centre), the stencil is the N + 1 consecutive centres starting at ``j − ⌊N/2⌋``. For
  N = 1 and N = 3 these are the N + 1 nearest centres (the pairs bracketing x); for N = 2 it is
  ``{j−1, j, j+1}`` — not always the three nearest, but the stencil only changes at bin centres,
  where both neighbouring quadratics pass through the centre value, so P is continuous for
  every order ≥ 1 (the "three nearest" rule would jump at bin edges).
* **Edges** (``edge=``):

  - ``"mirror"`` (default, ROOT's behaviour): stencil entries beyond the range are the mirror
    images of the bins inside it — index ``i < 0`` → bin ``−i − 1`` at node ``2 x_0 − ξ_{−i−1}``,
    ``i ≥ M`` → bin ``2M − i − 1`` at node ``2 x_M − ξ_{2M−i−1}`` (ROOT's "Underflow: mirror" /
    "Overflow: mirror"). The interpolant is then close to flat at the range boundary (for N = 1
    it is exactly constant in the outer half bins) and reproduces polynomials only where the
    stencil lies inside the histogram.
  - ``"shift"``: the stencil is shifted to stay inside the histogram (start clipped to
    ``[0, M − N − 1]``), i.e. polynomial *extrapolation* into the outer half bins; P reproduces
    polynomials of degree ≤ N everywhere in the range but may overshoot (or go negative) at a
    steep edge.

  Both need at least N + 1 bins per axis.
* **Outside** the histogram range the density is 0.

Negative values, floor and normalisation
----------------------------------------
For N ≥ 2 (and N = 1 with ``"shift"``) Lagrange weights can be negative, so P dips below 0 next
to steep or empty regions (for the LZ templates at order 2 up to 2–7 % of a template's integral).
As in ROOT (``RooDataHist::weightInterpolated``: "Cut off negative values") the density is the
clipped and renormalised interpolant; optionally (``floor = η > 0``, not ROOT) it is floored at
a fraction η of the bin's own order-0 value ``d⁰(x)``::

    f(x, y) = max(P(x, y), η d⁰(x, y)) / Z,      Z = ∫∫ max(P, η d⁰) dx dy  over the range.

With η = 0 an event can fall where every template's interpolant is ≤ 0 although its own bin is
populated (an unbinned likelihood of −∞ for every parameter value: the fitter reports such a
toy INFEASIBLE); η > 0 rules that out because every populated bin keeps a positive density.

Z is computed as follows. The cells between consecutive breakpoints — the edges, and for N ≥ 1
also the bin centres — carry one polynomial of degree ≤ N per variable (the stencil only changes
at centres) and one bin value d⁰ (which only changes at edges). Hence

* ``norm_unclipped = ∫∫ P`` is **exact** (to rounding): tensor Gauss–Legendre with N + 1 nodes
  per cell and axis, written as ``w_xᵀ D w_y`` with precomputed 1D weight vectors;
* P is sampled on a composite Gauss–Legendre grid (``quad_sub`` sub-intervals per cell); on the
  cells where ``P < η d⁰`` at some node, ``∫∫ max(P, η d⁰)`` is recomputed with 32 × 32
  sub-cells (N + 1 nodes each) and replaces the exact ∫∫ P of those cells. That rule is exact on
  every sub-cell that the zero line (or the floor line) of P does not cross; ``norm_error`` is
  its difference from the 16 × 16 rule, a conservative estimate of the error of Z. On the LZ
  templates (40 GeV workspace, 40×40 or 20×20 bins, orders 1–3, both edge modes)
  ``norm_error / Z ≤ 2e-6``; a brute-force 3000 × 3000 midpoint integral of the normalised
  density agrees with 1 to ≤ 2e-5 (the midpoint rule's own error; the tests use 1e-4). ``clipped_integral = Z − ∫∫ P`` ≥ 0 is the mass the clipping adds back.
  (A region where P < 0 narrower than one detection sub-cell would go unnoticed; its mass is
  below the quoted error.)
* N = 0: Z is the sum of the contents (exact), P ≥ 0 always.

Reference: ROOT, ``RooHistPdf`` / ``RooDataHist::interpolateDim`` and
``RooDataHist::weightInterpolated`` (roofit/roofitcore/src/RooDataHist.cxx).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .stencil import (EDGE_MODES, MAX_ORDER, cells, check_edges, gauss_grid, interpolation_matrix_1d,
                      right_index, stencil_1d)

__all__ = ["HistDensity2D"]

#: sub-intervals per axis of the quadrature of max(P, 0) in cells where P changes sign
_REFINE = 32
#: size of the per-chunk gather of stencil values in point evaluations
_CHUNK_BYTES = 4 << 20


class HistDensity2D:
    """Normalised, interpolated density of one or several 2D histograms on a common binning.

    Parameters
    ----------
    values:
        ``(nx, ny)`` contents, or ``(S, nx, ny)`` for a stack of ``S`` templates (all of them are
        interpolated and normalised separately; evaluation then returns one column each).
    edges:
        ``[x_edges, y_edges]``.
    order:
        Interpolation order 0 … :data:`MAX_ORDER` (RooHistPdf ``intOrder``).
    edge:
        ``"mirror"`` (ROOT) or ``"shift"`` — see the module docstring.
    floor:
        η ≥ 0: the density is ``max(P, η d⁰) / Z`` with ``d⁰`` the (order-0) value of the bin
        containing the point. η = 0 (default) is RooHistPdf's clipping at 0; η > 0 keeps the
        density positive wherever the bin itself is populated (see the module docstring).
    quad_sub:
        Sub-intervals per polynomial cell of the grid that detects where the clipping is active.

    Attributes (arrays over templates): ``total`` (sum of contents), ``norm`` (Z),
    ``norm_unclipped`` (∫∫ P, exact), ``clipped_integral`` (Z − ∫∫ P, the mass added by the
    clipping), ``norm_error`` (error estimate of Z). A template with no positive content has
    Z = 0 and density 0 everywhere.
    """

    def __init__(
        self, values: np.ndarray, edges: Sequence[np.ndarray], order: int = 0,
        edge: str = "mirror", floor: float = 0.0, quad_sub: int = 4,
    ):
        v = np.asarray(values, dtype=np.float64)
        self.single = v.ndim == 2
        if self.single:
            v = v[None]
        if v.ndim != 3:
            raise ValueError(f"values must be (nx, ny) or (S, nx, ny), got shape {v.shape}")
        ex = check_edges(edges[0], "x")
        ey = check_edges(edges[1], "y")
        if v.shape[1:] != (ex.size - 1, ey.size - 1):
            raise ValueError(f"values shape {v.shape[1:]} does not match edges "
                             f"({ex.size - 1}, {ey.size - 1})")
        if not np.all(np.isfinite(v)):
            raise ValueError("values contain NaN or infinite entries")
        if np.any(v < 0):
            raise ValueError("values must be non-negative (expected events per bin)")
        n = int(order)
        if n != order or not 0 <= n <= MAX_ORDER:
            raise ValueError(f"order must be an integer in [0, {MAX_ORDER}], got {order!r}")
        if edge not in EDGE_MODES:
            raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
        if min(v.shape[1:]) < n + 1:
            raise ValueError(f"order {n} needs at least {n + 1} bins per axis, got {v.shape[1:]}")
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {floor!r}")
        self.order, self.edge, self.floor, self.quad_sub = n, edge, float(floor), int(quad_sub)
        self.edges = (ex, ey)
        self.contents = v
        area = np.diff(ex)[:, None] * np.diff(ey)[None, :]
        self.density = v / area[None]  # per unit area, at the bin centres
        self.total = v.sum(axis=(1, 2))
        # point-evaluation table: (nx·ny, S), one contiguous row per bin
        self._table = np.ascontiguousarray(self.density.reshape(v.shape[0], -1).T)
        self._blocks: dict = {}
        self._normalise()
        self._blocks = {}
        self._inv_norm = np.divide(1.0, self.norm, out=np.zeros_like(self.norm),
                                   where=self.norm > 0)

    # ------------------------------------------------------------------ normalisation
    def _axis_weights(self, axis: int) -> np.ndarray:
        """∫ of each bin's 1D Lagrange cardinal function over the range (exact)."""
        e = self.edges[axis]
        nodes, w = gauss_grid(cells(e, self.order), self.order + 1, 1)
        return w @ interpolation_matrix_1d(nodes, e, self.order, self.edge)

    def _cell_blocks(self, axis: int, sub: int) -> tuple[np.ndarray, ...]:
        """Per cell of one axis (see :func:`cells`): interpolation weights of its composite
        Gauss–Legendre nodes ``(n_cells, G, N+1)``, stencil bins ``(n_cells, N+1)``,
        quadrature weights ``(n_cells, G)`` and the bin containing the cell ``(n_cells,)``,
        with ``G = sub·(N+1)`` nodes per cell."""
        key = (axis, sub)
        if key in self._blocks:
            return self._blocks[key]
        e = self.edges[axis]
        n_nodes = self.order + 1
        breaks = cells(e, self.order)
        nodes, w = gauss_grid(breaks, n_nodes, sub)
        idx, lw = stencil_1d(nodes, e, self.order, self.edge)
        n_cells = breaks.size - 1
        g = sub * n_nodes
        idx = idx.reshape(n_cells, g, n_nodes)[:, 0, :]  # the stencil is constant in a cell
        home = np.clip(right_index(0.5 * (breaks[1:] + breaks[:-1]), e), 0, e.size - 2)
        out = (lw.reshape(n_cells, g, n_nodes), idx, w.reshape(n_cells, g), home)
        self._blocks[key] = out
        return out

    def _cell_integrals(
        self, d: np.ndarray, cells: tuple[np.ndarray, np.ndarray], sub: int, clip: bool
    ) -> np.ndarray:
        """Composite Gauss–Legendre ∫ of P (``clip``: of max(P, η d⁰)) over the cells
        ``(kx, ky)`` of the template density ``d``; one value per cell."""
        lwx, ix, qx, hx = self._cell_blocks(0, sub)
        lwy, iy, qy, hy = self._cell_blocks(1, sub)
        kx, ky = cells
        out = np.empty(kx.size)
        step = max(1, (1 << 22) // max(lwx.shape[1] * lwy.shape[1], 1))
        for s0 in range(0, kx.size, step):
            cx, cy = kx[s0 : s0 + step], ky[s0 : s0 + step]
            dloc = d[ix[cx][:, :, None], iy[cy][:, None, :]]  # (C, N+1, N+1) stencil values
            p = lwx[cx] @ dloc @ lwy[cy].transpose(0, 2, 1)  # (C, Gx, Gy)
            if clip:
                np.maximum(p, (self.floor * d[hx[cx], hy[cy]])[:, None, None], out=p)
            out[s0 : s0 + step] = np.einsum("cg,cgh,ch->c", qx[cx], p, qy[cy])
        return out

    def _normalise(self) -> None:
        """Z per template (module docstring): the exact polynomial integral, corrected on the
        cells where P < η d⁰ at some node of the ``quad_sub`` grid by re-integrating
        max(P, η d⁰) there with ``_REFINE`` sub-intervals per axis (error estimated against
        ``_REFINE / 2``)."""
        s = self.density.shape[0]
        self.norm_error = np.zeros(s)
        if self.order == 0:  # P = d⁰ ≥ η d⁰ ≥ 0: Z is the sum of the contents
            self.norm_unclipped = self.total.copy()
            self.norm = self.total.copy()
            self.clipped_integral = self.norm - self.norm_unclipped
            return
        wx, wy = self._axis_weights(0), self._axis_weights(1)
        self.norm_unclipped = np.einsum("i,sij,j->s", wx, self.density, wy)
        self.norm = self.norm_unclipped.copy()
        lwx, ix, _, hx = self._cell_blocks(0, self.quad_sub)
        lwy, iy, _, hy = self._cell_blocks(1, self.quad_sub)
        for t in range(s):
            d = self.density[t]
            # P at every cell's nodes, (cells_x, Gx, cells_y, Gy), from the stencil values
            dloc = d[ix[:, None, :, None], iy[None, :, None, :]]  # (cx, cy, N+1, N+1)
            p = np.einsum("xga,xyab,yhb->xgyh", lwx, dloc, lwy, optimize=True)
            low = self.floor * d[hx[:, None], hy[None, :]]  # (cx, cy)
            active = (p < low[:, None, :, None]).any(axis=(1, 3))
            if not active.any():
                continue
            cells = np.nonzero(active)
            exact = self._cell_integrals(d, cells, 1, clip=False)  # ∫P on those cells (exact)
            fine = self._cell_integrals(d, cells, _REFINE, clip=True)
            coarse = self._cell_integrals(d, cells, _REFINE // 2, clip=True)
            self.norm[t] = self.norm_unclipped[t] + (fine - exact).sum()
            self.norm_error[t] = abs((fine - coarse).sum())
        self.clipped_integral = self.norm - self.norm_unclipped

    # ------------------------------------------------------------------ evaluation
    @property
    def n_templates(self) -> int:
        return int(self.density.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.density.shape[1]), int(self.density.shape[2]))

    @property
    def table(self) -> np.ndarray:
        """``(nx·ny, S)`` per-area node values, one row per bin (C order) — read-only."""
        t = self._table.view()
        t.setflags(write=False)
        return t

    @property
    def inv_norm(self) -> np.ndarray:
        """``(S,)`` 1/Z (0 for an empty template) — read-only."""
        v = self._inv_norm.view()
        v.setflags(write=False)
        return v

    def _points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Unclipped P at the points, ``(E, S)``; 0 outside the range. Per chunk of points:
        one gather of the ``(N+1)²`` stencil rows ``(E, (N+1)², S)`` and one contraction with
        the tensor weights ``w_x[a] w_y[b]``."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError("x and y must have the same number of points")
        ex, ey = self.edges
        ny = ey.size - 1
        k = (self.order + 1) ** 2
        out = np.empty((x.size, self.n_templates))
        chunk = max(1024, _CHUNK_BYTES // (8 * k * self.n_templates))  # gathers stay small
        for s0 in range(0, x.size, chunk):
            xs, ys = x[s0 : s0 + chunk], y[s0 : s0 + chunk]
            ix, wx = stencil_1d(xs, ex, self.order, self.edge)
            iy, wy = stencil_1d(ys, ey, self.order, self.edge)
            flat = (ix[:, :, None] * ny + iy[:, None, :]).reshape(xs.size, k)
            acc = out[s0 : s0 + chunk]
            if self.order == 0:
                np.take(self._table, flat[:, 0], axis=0, out=acc)
            else:
                w = (wx[:, :, None] * wy[:, None, :]).reshape(xs.size, k)
                np.einsum("ek,eks->es", w, np.take(self._table, flat, axis=0), out=acc)
            inside = (xs >= ex[0]) & (xs <= ex[-1]) & (ys >= ey[0]) & (ys <= ey[-1])
            if not inside.all():
                acc[~inside] = 0.0
        return out

    def _shape_out(self, vals: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.single:
            return vals[:, 0].reshape(shape)
        return vals.reshape(shape + (self.n_templates,))

    def interpolate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The raw interpolant P (per unit area, neither clipped, floored nor normalised).

        Shape: ``x.shape`` for a single histogram, ``x.shape + (S,)`` for a stack.
        """
        return self._shape_out(self._points(x, y), np.shape(x))

    def pdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised density ``max(P, η d⁰) / Z`` (0 outside the range); shapes as
        :meth:`interpolate`."""
        return self._shape_out(self.pdf_points(x, y), np.shape(x))

    __call__ = pdf

    def pdf_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised densities ``max(P, η d⁰) / Z`` of flat point arrays as ``(E, S)``."""
        p = self._points(x, y)
        if self.floor > 0 and self.order > 0:
            d0 = self._bin_values(x, y)
            np.maximum(p, self.floor * d0, out=p)
        else:
            np.maximum(p, 0.0, out=p)
        p *= self._inv_norm[None, :]
        return p

    def _bin_values(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Order-0 densities d⁰ ``(E, S)`` of the bins containing the points (0 outside)."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        ex, ey = self.edges
        ix = np.clip(right_index(x, ex), 0, ex.size - 2)
        iy = np.clip(right_index(y, ey), 0, ey.size - 2)
        out = np.take(self._table, ix * (ey.size - 1) + iy, axis=0)
        inside = (x >= ex[0]) & (x <= ex[-1]) & (y >= ey[0]) & (y <= ey[-1])
        out[~inside] = 0.0
        return out
