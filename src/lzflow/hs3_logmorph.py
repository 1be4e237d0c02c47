r"""The multiplicative (log) shape morphings of :mod:`lzflow.stats.logmorph` written exactly in HS3,
inside the ``histfactory_dist`` of :mod:`lzflow.hs3` (issue 12).

lzflow's morphed template of sample s, bin i is ``T_si(α) = T_si · exp(Σ_k Σ_m B_m(α_k) C_mksi)``
with fixed basis functions B_m (piecewise polynomials in α, linear beyond the last knot) and per-bin
coefficients C. None of ROOT's ``PiecewiseInterpolation`` codes (0, 1, 2, 4, 5, 6: all defined by the
±1σ templates alone, and acting on T) can hold the ±2σ knots of ``log_quartic``/``log_pchip``, so
the morphing is not a ``histosys``. It is written instead, exactly, as

* one ``generic_function`` per shape parameter α_k and basis column m, ``logmorph_<α_k>_b<m>``:
  B_m(α_k) as a sum of interval indicators times polynomials, e.g. for log_pchip's value function
  of the knot +1 ``(a>=0)*(a<1)*(-2*t*t*t+3*t*t) + (a>=1)*(a<2)*(2*u*u*u-3*u*u+1)`` with t = a − 0,
  u = a − 1 (the cubic Hermite basis of :func:`lzflow.stats.logmorph.basis_functions`);
* one ``generic_function`` per sample-bin with a non-zero coefficient,
  ``logmorph_<sample>_<i>`` = ``exp(Σ C_mksi * logmorph_<α_k>_b<m>)`` (coefficients written with
  ``repr``: the shortest decimal that reads back as the same double), and ``logmorph_unity`` = 1
  for the others;
* per affected sample a ``shapefactor`` modifier whose per-bin ``parameters`` are those functions
  (ROOT 6.40 builds a ``ParamHistFunc`` of them, multiplying the sample's other modifiers:
  HistFactory's product, as lzflow's rate θ_b multiplies the morphed template);
* per shape parameter a ``normsys`` with hi = lo = 1 on the first sample: a factor of exactly 1 for
  every α (FlexibleInterpVar code 4: 1^α, and its polynomial of ln 1 = 0), which makes ROOT create
  the unit Gaussian constraint ``alpha_<name>`` ~ N(nom_alpha_<name>, 1) and the global observable,
  as for a ``histosys``.

Bin order of a ``shapefactor``: ROOT's ``ParamHistFunc`` reads its parameters with the *first* axis
fastest (``ParamHistFunc::getCurrentBin``; measured with ROOT 6.40 on a 2 × 3 histogram), while the
contents are in C order (first axis slowest, ``RooDataHist``), so the list is the C-ordered bins
in Fortran order. The formulae use only numbers, parameter and function names, ``+ - * /``,
comparisons (1 or 0) and ``exp``: a reader needs no more than that (the tests evaluate them with a
twenty-line evaluator and compare with lzflow's expected events, and with ROOT's NLL where ROOT is
installed).

Size: 1 + M K + (sample-bins with a non-zero coefficient) functions: the quick 40 GeV workspace
(12 samples × 400 bins, 5 systematics, log_pchip) 1281 functions, 2.1 MB, which ROOT 6.40 imports in
87 s (one JIT-compiled TFormula per function) and whose RooFit NLL differences equal lzflow's to
6.5e-11 at α up to ±4.5 (measured on the pipeline's ``workspace.hs3.json``); the default 40 GeV one
(1600 bins) 5619 functions, 8.4 MB.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["UNITY", "basis_expressions", "log_morph_hs3"]

#: the function every sample-bin without a morphing coefficient points to
UNITY = "logmorph_unity"


def _num(x: float) -> str:
    """A float as a formula literal that reads back bit for bit (``repr``), negatives in parentheses."""
    s = repr(float(x))
    return f"({s})" if s.startswith("-") else s


def _ind(a: str, lo: float | None, hi: float | None, hi_closed: bool = False) -> str:
    """The indicator of lo ≤ a < hi (a ≤ hi if ``hi_closed``; an open end is ``None``)."""
    parts = []
    if lo is not None:
        parts.append(f"({a}>={_num(lo)})")
    if hi is not None:
        parts.append(f"({a}{'<=' if hi_closed else '<'}{_num(hi)})")
    return "*".join(parts)


def _shift(a: str, p: float) -> str:
    """``(a − p)`` as a formula."""
    return f"({a}-{_num(p)})" if p >= 0 else f"({a}+{_num(-p)})"


#: the cubic Hermite basis on a unit interval in t: h00, h10 (left value, slope), h01, h11 (right)
_HERMITE = {
    "h00": "(2*{t}*{t}*{t}-3*{t}*{t}+1)",
    "h10": "({t}*{t}*{t}-2*{t}*{t}+{t})",
    "h01": "(-2*{t}*{t}*{t}+3*{t}*{t})",
    "h11": "({t}*{t}*{t}-{t}*{t})",
}


def _pchip_column(a: str, m: int) -> str:
    """log_pchip's basis column m at a: m = 0–3 the value functions of the knots −2, −1, +1, +2,
    m = 4–8 the slope functions of the knots −2 … +2; beyond ±2 the end knot's value function is 1
    and its slope function a ∓ 2 (:func:`lzflow.stats.logmorph.basis_functions`)."""
    value = m < 4
    p = float((-2, -1, 1, 2)[m] if value else m - 6)
    terms = []
    if p > -2:  # the interval [p − 1, p), where the knot is the right end
        t = _shift(a, p - 1)
        terms.append(f"{_ind(a, p - 1, p)}*{_HERMITE['h01' if value else 'h11'].format(t=t)}")
    if p < 2:  # [p, p + 1): the left end
        t = _shift(a, p)
        terms.append(f"{_ind(a, p, p + 1)}*{_HERMITE['h00' if value else 'h10'].format(t=t)}")
    if p == 2:
        terms.append(f"{_ind(a, 2.0, None)}*{'1' if value else _shift(a, 2.0)}")
    if p == -2:
        terms.append(f"{_ind(a, None, -2.0)}*{'1' if value else _shift(a, -2.0)}")
    return "+".join(terms)


def _quartic_column(a: str, m: int) -> str:
    """log_quartic's B_{m+1}(a) = a^{m+1} inside ±2 (ends included), continued linearly with its
    slope at ±2 beyond."""
    n = m + 1
    inside = "*".join([a] * n)
    out = []
    for end in (2.0, -2.0):
        val, slope = end ** n, n * end ** (n - 1)
        cond = _ind(a, None, end) if end < 0 else f"({a}>{_num(end)})"
        out.append(f"{cond}*({_num(val)}+{_num(slope)}*{_shift(a, end)})")
    return f"{_ind(a, -2.0, 2.0, hi_closed=True)}*{inside}+" + "+".join(out)


def _code4p_column(a: str, m: int) -> str:
    """log_code4p's (a, f(a)): f = a²(a²(3a² − 10) + 15)/8 inside ±1 (ends included), |a| beyond."""
    if m == 0:
        return a
    poly = f"({a}*{a}*({a}*{a}*(3*{a}*{a}-10)+15)/8)"
    return f"{_ind(a, -1.0, 1.0, hi_closed=True)}*{poly}+({a}>1)*{a}+({a}<(-1))*(-{a})"


def basis_expressions(interpolation: str, parameter: str, n_basis: int) -> list[str]:
    """The formulae of the ``n_basis`` basis functions B_m of ``interpolation`` in ``parameter``."""
    column = {"log_pchip": _pchip_column, "log_quartic": _quartic_column, "log_code4p": _code4p_column}[interpolation]
    return [column(parameter, m) for m in range(n_basis)]


def log_morph_hs3(C: np.ndarray, interpolation: str, parameters: Sequence[str], samples: Sequence[str],
                  bin_shape: Sequence[int]) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """``(functions, shapefactors)``: the HS3 ``generic_function`` entries of the morphing with
    coefficients ``C`` ``(M, K, S, n_bins)`` (:class:`lzflow.stats.logmorph.LogMorphBasis`) and,
    per sample index with any coefficient, its ``shapefactor`` modifier (module docstring)."""
    M, K, S, n_bins = C.shape
    functions = [{"name": UNITY, "type": "generic_function", "expression": "1"}]
    basis = [[f"logmorph_{par}_b{m}" for m in range(M)] for par in parameters]
    for k, par in enumerate(parameters):
        for m, expr in enumerate(basis_expressions(interpolation, par, M)):
            functions.append({"name": basis[k][m], "type": "generic_function", "expression": expr})
    shapefactors = {}
    for s, sample in enumerate(samples):
        if not np.any(C[:, :, s]):
            continue
        names = []
        for i in range(n_bins):
            terms = [f"{_num(C[m, k, s, i])}*{basis[k][m]}" for k in range(K) for m in range(M) if C[m, k, s, i] != 0.0]
            if not terms:
                names.append(UNITY)
                continue
            names.append(f"logmorph_{sample}_{i}")
            functions.append({"name": names[-1], "type": "generic_function", "expression": f"exp({'+'.join(terms)})"})
        order = np.asarray(names, dtype=object).reshape(tuple(bin_shape)).ravel(order="F")  # ROOT: first axis fastest
        shapefactors[s] = {"type": "shapefactor", "name": f"logmorph_{sample}", "parameters": [str(n) for n in order]}
    return functions, shapefactors
