"""Pseudo-datasets from a workspace (``lzflow simulate-data``; docs/data.md).

Expected events
---------------
Per source s ([signal, *backgrounds], the workspace's order) and bin i of the (cS1, log10 cS2)
grid, at the generation point (μ, θ, α)::

    ν_sig,i = μ T_sig,i(α),    ν_b,i = θ_b T_b,i + [T_b,i(α) − T_b,i],    μ = σ / σ_ref

with T the workspace templates and σ_ref its reference cross section (the signal template is the
expected events at σ_ref and μ scales it linearly, :mod:`lzflow.workspace`), T(α) the code-4p
morphed templates of a workspace with shape systematics (:mod:`lzflow.stats.morphing`; with the
multiplicative ``log_code4p`` interpolation ν_b,i = θ_b T_b,i(α) instead); the sum over sources is
checked against :meth:`lzflow.stats.model.BinnedModel.expected`. Nuisance parameters are

* ``nominal`` (the default): θ_b = 1, α_k = 0: the workspace's templates as they are;
* ``drawn``: from their constraints, θ_b ~ Gauss(1, r_b) clipped at 0 (the fit's bound) for every
  constrained background, α_k ~ Gauss(0, 1); fixed backgrounds (r_b = 0) stay at 1. A bin that
  morphing makes negative is set to 0 and counted (``clipped_bins``).

Events
------
Counts n_si ~ Poisson(ν_si), independently per source and bin (their sum per bin is Poisson(ν_i),
the binned likelihood's distribution). Each event is placed **uniformly in cS1 and uniformly in
log10 cS2 within its bin**: the piecewise-constant density of the templates (the unbinned model at
``order = 0``). cS2 = 10^(log10 cS2) is moved by a few ulps where needed so that reading the file
back puts every event in the bin it was drawn in (checked before anything is returned). The events
are written in a shuffled order.

Random numbers
--------------
Counter-based words (:mod:`lzflow.stats._rng`, SplitMix64) with the key
``SeedSequence([seed, mass_key, 0xDA7A])`` (mass_key = round(mass_GeV × 10⁴)); stream, word:

* stream 0, word k: the nuisance parameter k (θ of the backgrounds in workspace order, then α);
* stream 1, word s·n_bins + i: the Poisson count of source s in bin i (C order);
* stream 2 + s, words 3e + {0, 1, 2}: event e of source s (events of a source in bin order):
  its cS1, its log10 cS2 and its shuffle key.

A source's events depend only on the seed, the mass and that source's expectations, so with
nominal nuisance parameters a signal injected with a seed adds events to the background-only
dataset of that seed and leaves its background events unchanged. No numpy ``Generator`` is used:
the values do not depend on numpy's sampler versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy.special import ndtri

from .eventlist import AnalysisWindow, DataError, EventList, log10_cs2, select_window, write_events
from .masskey import mass_key
from .stats._rng import PoissonInverse, uniforms_from_words, words

__all__ = ["NUISANCE_MODES", "DATA_STREAM", "PseudoData", "load_workspace", "simulate", "write_pseudo_data"]

NUISANCE_MODES = ("nominal", "drawn")
#: third entry of the seed sequence: keeps these streams apart from the toys' (poi, hypothesis) ones
DATA_STREAM = 0xDA7A


@dataclass(frozen=True)
class PseudoData:
    """A simulated dataset: ``cs1``, ``cs2`` [phd] per event (shuffled), and its truth.

    source_counts / expected: ``(1 + n_bkg, n_cS1, n_log10cS2)`` drawn counts and expectations per
    source ([signal, *backgrounds], names in ``sources``); parameters: the generation point's
    θ_b and α_k by name; provenance: what goes into the files."""

    cs1: np.ndarray
    cs2: np.ndarray
    source_counts: np.ndarray
    expected: np.ndarray
    sources: tuple[str, ...]
    sigma_cm2: float
    mu: float
    seed: int
    nuisance: str
    parameters: Mapping[str, float]
    clipped_bins: int
    provenance: Mapping[str, Any]

    @property
    def n_events(self) -> int:
        return int(self.cs1.size)

    @property
    def signal_events(self) -> int:
        return int(self.source_counts[0].sum())


def load_workspace(path: str | Path) -> tuple[dict[str, Any], str]:
    """A workspace document (``.json`` or ``.json.gz``) and the sha256 of the file (a bad file is a
    :class:`DataError`: :func:`lzflow.workspace.load_workspace_file`)."""
    from .workspace import load_workspace_file

    return load_workspace_file(path, DataError)


def _key(seed: int, mass_GeV: float) -> np.ndarray:
    return np.random.SeedSequence([int(seed), mass_key(mass_GeV), DATA_STREAM]).generate_state(2, np.uint64)


def _uniforms(key: np.ndarray, stream: int, j: np.ndarray) -> np.ndarray:
    return uniforms_from_words(words(key, np.uint64(stream), np.asarray(j, dtype=np.uint64)))


def _generation_point(model: Any, draw: bool, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(θ, α) at nominal, or drawn from the constraints (stream 0)."""
    theta, alpha = np.ones(model.n_bkg), np.zeros(model.n_shape)
    if draw:
        z = ndtri(_uniforms(key, 0, np.arange(model.n_bkg + model.n_shape)))
        c = model.constrained
        theta[c] = np.maximum(1.0 + model.rel_unc[c] * z[: model.n_bkg][c], 0.0)
        alpha = z[model.n_bkg:]
    return theta, alpha


def _expected_by_source(model: Any, mu: float, theta: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, int]:
    """``(1 + n_bkg, n_bins)`` expectations per source (module docstring; with a multiplicative morphing
    — every interpolation but the additive ``code4p`` — ν_b = θ_b T_b(α)), checked to add up to the model's ν, and the number of bins set to 0."""
    nominal = np.vstack([model.signal[None], model.backgrounds])
    morphed = model.morph.templates(alpha) if model.n_shape else nominal
    if getattr(model, "interpolation", "code4p") != "code4p":  # log morphings: a rate multiplies the morphed template
        nu = np.vstack([mu * morphed[:1], theta[:, None] * morphed[1:]])
    else:  # additive code 4p: a rate multiplies the nominal template, the shape variations add
        nu = np.vstack([mu * morphed[:1], theta[:, None] * nominal[1:] + (morphed[1:] - nominal[1:])])
    total = model.expected(mu, np.r_[theta, alpha]) if model.n_shape else model.expected(mu, theta)
    if not np.allclose(nu.sum(axis=0), total, rtol=1e-9, atol=1e-12):  # pragma: no cover
        raise RuntimeError("per-source expectations do not add up to the model's")
    negative = nu < 0
    return np.where(negative, 0.0, nu), int(negative.sum())


def _poisson_counts(nu: np.ndarray, key: np.ndarray) -> np.ndarray:
    """n ~ Poisson(ν) per entry of the flat ``nu`` (stream 1, word = entry index)."""
    flat = nu.ravel()
    counts = np.zeros(flat.size, dtype=np.int64)
    live = np.flatnonzero(flat > 0)
    if live.size:
        u = _uniforms(key, 1, live)
        counts[live] = PoissonInverse(flat[live]).sample(u[None, :])[0].astype(np.int64)
    return counts.reshape(nu.shape)


def _uniform_in(edges: np.ndarray, i: np.ndarray, u: np.ndarray) -> np.ndarray:
    lo, hi = edges[i], edges[i + 1]
    return np.minimum(lo + u * (hi - lo), np.nextafter(hi, -np.inf))


def _cs2_in_bin(log10cs2: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """cS2 = 10^y, moved by ulps until ``lo <= log10 cS2 < hi`` holds as the reader computes it."""
    cs2 = np.power(10.0, log10cs2)
    for _ in range(64):
        y = log10_cs2(cs2)
        low, high = y < lo, y >= hi
        if not (low.any() or high.any()):
            return cs2
        cs2[low] = np.nextafter(cs2[low], np.inf)
        cs2[high] = np.nextafter(cs2[high], -np.inf)
    raise RuntimeError("cS2 could not be placed inside its log10 bin")  # pragma: no cover


def _events(counts: np.ndarray, window: AnalysisWindow, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cS1, cS2 of all sources' events in the shuffled order (streams 2 + s)."""
    ny = window.shape[1]
    xs, ys, keys, lo, hi = [], [], [], [], []
    for s, per_bin in enumerate(counts):
        bins = np.repeat(np.arange(per_bin.size), per_bin)
        e = np.arange(bins.size, dtype=np.uint64)
        w = words(key, np.uint64(2 + s), 3 * e[:, None] + np.arange(3, dtype=np.uint64)[None, :])
        u = uniforms_from_words(w[:, :2])
        ix, iy = np.divmod(bins, ny)
        xs.append(_uniform_in(window.cs1_edges, ix, u[:, 0]))
        ys.append(_uniform_in(window.log10cs2_edges, iy, u[:, 1]))
        keys.append(w[:, 2])
        lo.append(window.log10cs2_edges[iy])
        hi.append(window.log10cs2_edges[iy + 1])
    order = np.argsort(np.concatenate(keys), kind="stable")
    cs1 = np.concatenate(xs)[order]
    cs2 = _cs2_in_bin(np.concatenate(ys)[order], np.concatenate(lo)[order], np.concatenate(hi)[order])
    return cs1, cs2


def simulate(ws: Mapping[str, Any], sigma_cm2: float, seed: int, nuisance: str = "nominal",
             workspace_sha256: str | None = None) -> PseudoData:
    """A pseudo-dataset of the workspace ``ws`` with a signal at ``sigma_cm2`` (0: background
    only), from ``seed``; ``nuisance``: ``nominal`` or ``drawn`` (module docstring)."""
    from .workspace import workspace_model

    if isinstance(sigma_cm2, bool) or not isinstance(sigma_cm2, (int, float)) or not np.isfinite(sigma_cm2) \
            or sigma_cm2 < 0:
        raise DataError(f"sigma_cm2: {sigma_cm2!r}; expected a finite cross section >= 0 in cm2 (0: background only)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed: {seed!r}; expected an integer >= 0")
    if nuisance not in NUISANCE_MODES:
        raise DataError(f"nuisance: {nuisance!r}; expected one of {', '.join(NUISANCE_MODES)}")
    window = AnalysisWindow.from_workspace(ws)
    model = workspace_model(ws)
    sigma_ref = float(ws["sigma_ref_cm2"])
    mu = float(sigma_cm2) / sigma_ref
    key = _key(seed, ws["mass_GeV"])
    theta, alpha = _generation_point(model, nuisance == "drawn", key)
    nu, clipped = _expected_by_source(model, mu, theta, alpha)
    counts = _poisson_counts(nu, key)
    cs1, cs2 = _events(counts, window, key)
    shape = (counts.shape[0],) + window.shape
    counts, nu = counts.reshape(shape), nu.reshape(shape)
    check = select_window(EventList(cs1, cs2, "", ""), window)
    if check.n_outside or not np.array_equal(check.counts, counts.sum(axis=0)):  # pragma: no cover
        raise RuntimeError("simulated events do not bin back to their drawn counts")
    names = (ws["signal"]["name"], *(b["name"] for b in ws["backgrounds"]))
    parameters = {**{f"theta_{n}": float(t) for n, t in zip(names[1:], theta)},
                  **{p: float(a) for p, a in zip(model.shape_parameters, alpha)}}
    provenance = {"generator": "lzflow simulate-data", "workspace_sha256": workspace_sha256,
                  "mass_GeV": float(ws["mass_GeV"]), "sigma_ref_cm2": sigma_ref, "sigma_cm2": float(sigma_cm2),
                  "mu": mu, "seed": int(seed), "nuisance": nuisance, "parameters": parameters,
                  "clipped_bins": clipped,
                  "placement": "Poisson counts per source and bin; uniform in cS1 and log10 cS2 within a bin"}
    return PseudoData(cs1, cs2, counts, nu, names, float(sigma_cm2), mu, int(seed), nuisance, parameters,
                      clipped, provenance)


def write_pseudo_data(path: str | Path, data: PseudoData, fmt: str | None = None, tree: str = "events") -> str:
    """Write ``data``'s events with their provenance (:func:`lzflow.eventlist.write_events`)."""
    return write_events(path, data.cs1, data.cs2, fmt=fmt, provenance=data.provenance, tree=tree)
