"""Counter-based random numbers and vectorised inverse-CDF samplers for toys.

Why: a numpy ``Generator`` per toy costs ~15–25 µs to create and its Poisson sampler ~20–70 ns
per bin — more than the batched fits of that toy. Here every random word is a pure function of
(ensemble key, toy index, word index), so the words of any set of toys are produced by a few
vectorised numpy operations and a toy's numbers never depend on which other toys are drawn
with it (split invariance by construction).

Word ``j`` of toy ``k``::

    w(k, j) = mix64( mix64(key0 + γ·(k·2³² + j)) XOR key1 )

with ``mix64`` the SplitMix64 finaliser (Steele, Lea & Flood 2014; the output function of
``java.util.SplittableRandom``), γ = 0x9E3779B97F4A7C15, and ``(key0, key1)`` =
``SeedSequence([base_seed, mass_key, poi_index, hypothesis]).generate_state(2, uint64)``. The
inner stage is exactly SplitMix64 at stream position k·2³² + j (a bijection of the counter, so no
two words of an ensemble share an input); the keyed second stage decorrelates ensembles.
Uniforms are ``((w >> 11) + 0.5) · 2⁻⁵³`` ∈ (0, 1).

Samplers use one uniform per variate (inverse CDF): Gaussian via ``scipy.special.ndtri``;
Poisson via per-bin CDF tables with a guide table (Chen & Asau 1974) and a short vectorised
sequential search.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri, pdtr

__all__ = ["ensemble_key", "words", "uniforms_from_words", "PoissonInverse", "poisson_inverse_scalar"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32, _S11 = (np.uint64(s) for s in (30, 27, 31, 32, 11))


def ensemble_key(base_seed: int, mass_key: int, poi_index: int, hypothesis: int) -> np.ndarray:
    """Two 64-bit key words for one toy ensemble, from ``numpy.random.SeedSequence``."""
    ss = np.random.SeedSequence([int(base_seed), int(mass_key), int(poi_index), int(hypothesis)])
    return ss.generate_state(2, np.uint64)


def _mix64_(z: np.ndarray, tmp: np.ndarray) -> None:
    """SplitMix64 finaliser, in place (``tmp`` a scratch array of the same shape)."""
    np.right_shift(z, _S30, out=tmp)
    z ^= tmp
    z *= _M1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _M2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp


def words(key: np.ndarray, toy: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Random 64-bit words for (toy, word-index) pairs (broadcasting)."""
    toy = np.asarray(toy, dtype=np.uint64)
    j = np.asarray(j, dtype=np.uint64)
    z = np.left_shift(toy, _S32)
    z = z + j  # broadcast to the full shape
    tmp = np.empty_like(z)
    with np.errstate(over="ignore"):
        z *= _GAMMA
        z += key[0]
        _mix64_(z, tmp)
        z ^= key[1]
        _mix64_(z, tmp)
    return z


def uniforms_from_words(w: np.ndarray) -> np.ndarray:
    """Map 64-bit words to doubles in the open interval (0, 1)."""
    return ((w >> _S11).astype(np.float64) + 0.5) * (2.0**-53)


def normals_from_uniforms(u: np.ndarray) -> np.ndarray:
    return ndtri(u)


def _poisson_table(lam: float) -> np.ndarray:
    """CDF F(0..K) of Poisson(λ), K = λ + 14√λ + 30 (tail beyond < 1e-30); the last entry is
    set to 2 (> any uniform) so every search terminates."""
    if not lam > 0:
        return np.array([2.0])
    kmax = int(np.ceil(lam + 14.0 * np.sqrt(lam) + 30.0))
    # pdtr(k, λ) is the Poisson CDF scipy.stats.poisson.cdf evaluates (bit-identical for integer k ≥ 0,
    # λ > 0) without importing scipy.stats (~1 s of a toy job's start-up)
    cdf = pdtr(np.arange(kmax + 1), lam)
    cdf[-1] = 2.0
    return cdf


class PoissonInverse:
    """Vectorised inverse-CDF Poisson sampler for a fixed vector of means λ_b.

    ``sample(u)`` with ``u`` ``(n, B)`` uniforms returns counts ``(n, B)``: n = min{k : u < F_b(k)}.
    A guide table of ``G`` cells per bin gives the starting k; the rest is a short search.
    """

    def __init__(self, lam: np.ndarray, guide: int = 32):
        lam = np.asarray(lam, dtype=np.float64)
        self.lam = lam
        tables = [_poisson_table(float(l)) for l in lam]
        self.offset = np.zeros(lam.size, dtype=np.int64)
        self.offset[1:] = np.cumsum([t.size for t in tables])[:-1]
        self.cdf = np.concatenate(tables) if tables else np.zeros(0)
        self.G = int(guide)
        g = np.arange(self.G) / self.G
        guide_tab = np.empty((lam.size, self.G), dtype=np.int64)
        for b, t in enumerate(tables):
            guide_tab[b] = np.searchsorted(t, g, side="right")  # min{k : F(k) > g/G}
        self.guide_flat = (guide_tab + self.offset[:, None]).ravel()

    def sample(self, u: np.ndarray) -> np.ndarray:
        n, nb = u.shape
        cell = (u * self.G).astype(np.int64)
        np.minimum(cell, self.G - 1, out=cell)
        cell += (np.arange(nb, dtype=np.int64) * self.G)[None, :]
        idx = self.guide_flat[cell]  # flat index into self.cdf
        uf = u.ravel()
        idxf = idx.ravel()
        pos = np.flatnonzero(uf >= self.cdf[idxf])
        while pos.size:
            idxf[pos] += 1
            pos = pos[uf[pos] >= self.cdf[idxf[pos]]]
        return (idx - self.offset[None, :]).astype(np.float64)


def poisson_inverse_scalar(lam: float, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF Poisson(λ) for a single λ and any array of uniforms."""
    t = _poisson_table(lam)
    return np.searchsorted(t, u, side="right")
