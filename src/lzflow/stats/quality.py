"""Which toys count: the exclusion policy of toy fits and its cause codes.

A toy's q at a tested μ is used only if the fits it depends on converged: the unconditional fit,
and the conditional fit at μ where it enters q (μ̂ ≤ μ for q̃_μ/q_μ, μ̂ > 0 for q₀; a conditional
fit that is INFEASIBLE gives q = +inf, a valid value), and q is not NaN. A toy whose fit failed
in every strategy (retries and iminuit) is not a result: it is left out of every ensemble and
every B-only experiment, and counted per ensemble with its cause (``uncond:<STATUS>``,
``cond:<STATUS>``, ``nan_q``; :func:`toy_quality`, :func:`cause_counts`). p-values are fractions
of the **used** toys: the denominator N of an ensemble is its number of used toys (reported next
to the number generated). A B-only experiment with any unused q on the grid is left out of the
bands (counted). Leaving toys out is only unbiased if failures are unrelated to q; callers flag
ensembles that lose many.

Cause codes: :data:`GOOD` (0) usable, 1 NaN q, 2 + status of a failed unconditional fit,
20 + status of a failed conditional fit (:class:`~lzflow.stats.fitresult.FitStatus`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .fitresult import FitStatus
from .toyresult import ToyResult

__all__ = ["GOOD", "EXCLUSION_POLICY", "record_field", "toy_quality", "cause_counts"]

#: cause code of a usable toy
GOOD = 0
_NAN_Q, _UNCOND, _COND = 1, 2, 20
#: the policy in one sentence (``excluded.policy`` of merge's limit.json)
EXCLUSION_POLICY = ("a toy's q is used only if its unconditional fit converged, the conditional fit it depends on "
                    "converged (or was infeasible: q = +inf), and q is not NaN; p-values are fractions of the used "
                    "toys (n_used); a B-only experiment with an unused q anywhere on the grid is left out of the bands")


def _cause_label(code: int) -> str:
    if code == _NAN_Q:
        return "nan_q"
    if code >= _COND:
        return f"cond:{FitStatus(code - _COND).name}"
    return f"uncond:{FitStatus(code - _UNCOND).name}"


def record_field(records: Any, name: str) -> np.ndarray:
    """The array ``name`` of toy records: a :class:`ToyResult` attribute or a toy file's entry."""
    return np.asarray(records[name] if isinstance(records, Mapping) else getattr(records, name))


def toy_quality(records: Mapping[str, np.ndarray] | ToyResult, test_stat: str) -> np.ndarray:
    """Cause codes ``(n, n_mu)`` of the toys' q values: 0 = usable, else why not (the
    exclusion policy of the module docstring; labels from :func:`cause_counts`).

    ``records``: a :class:`ToyResult` or a toy file's arrays (q, mu_hat, mu_test, status_uncond,
    status_cond)."""
    q = np.atleast_2d(record_field(records, "q").astype(np.float64))
    n, n_mu = q.shape
    mu_hat = record_field(records, "mu_hat").astype(np.float64).reshape(n)
    mu_test = record_field(records, "mu_test").astype(np.float64).reshape(-1)
    st_u = record_field(records, "status_uncond").reshape(n)
    st_c = record_field(records, "status_cond").reshape(n, n_mu)
    if test_stat == "q0":
        used = mu_hat > 0
        used = np.broadcast_to(used[:, None], (n, n_mu))
    else:
        used = ~(mu_hat[:, None] > mu_test[None, :])  # μ̂ ≤ μ, or μ̂ NaN
    codes = np.zeros((n, n_mu), dtype=np.int16)
    codes[np.isnan(q)] = _NAN_Q
    cond_bad = used & (st_c != FitStatus.CONVERGED) & (st_c != FitStatus.INFEASIBLE)
    codes[cond_bad] = (_COND + st_c[cond_bad]).astype(np.int16)
    unc_bad = st_u != FitStatus.CONVERGED
    codes[unc_bad] = (_UNCOND + st_u[unc_bad, None]).astype(np.int16)
    return codes


def cause_counts(codes: np.ndarray) -> dict[str, int]:
    """{cause label: count} of the non-zero codes of :func:`toy_quality` (sorted by label)."""
    codes = np.asarray(codes)
    u, c = np.unique(codes[codes != GOOD], return_counts=True)
    return dict(sorted((_cause_label(int(a)), int(b)) for a, b in zip(u, c)))
