r"""NEST's ER recombination skewness as a detector choice (``er_skewness``), and the per-event NEST
path that honours it.

NEST draws the number of electrons left after recombination from a skew-normal distribution
(``NESTcalc::GetQuanta``, src/NEST.cpp, NESTCollaboration/nest @6f889f9):

.. math:: N_e \sim \mathrm{SkewNormal}\big(\mu = (1-r)N_i - \mu_c,\ \sigma = \sqrt{V}/w_c,\ \alpha\big),
          \quad w_c = \sqrt{1 - \tfrac{2}{\pi}\tfrac{\alpha^2}{1+\alpha^2}},\quad
          \mu_c = \tfrac{\sqrt V}{w_c}\tfrac{\alpha}{\sqrt{1+\alpha^2}}\sqrt{2/\pi},

so the mean :math:`(1-r)N_i` and the variance :math:`V` do not depend on α. For ER (Lindhard = 1)
α is ``GetQuanta``'s argument ``SkewnessER`` unless that is −999, in which case NEST's LUX Run04 model
(V. Velan) sets α(E, field) (+0.5 to +0.7 at 3–10 keV and 96.5 V/cm); α = 0 is a Gaussian. NR uses
the width vector's entry 5 whatever ``SkewnessER`` says.

``nestpy.array.runNESTvec`` (nestpy 2.1.3) always passes −999 (the model). A detector with
``er_skewness: <number>`` (e.g. 0) therefore simulates its ER-like interactions (β, γ, charge-scaled
β) event by event here: ``GetYields`` → ``GetQuanta(…, SkewnessER)`` → ``GetS1`` → ``GetS2`` in
``runNESTvec``'s order, NEST seeded once per chunk exactly as ``runNESTvec`` is (so α = −999 here
reproduces ``runNESTvec`` event for event: tests/unit/test_er_skewness.py). NR, which α does not
touch, keeps ``runNESTvec`` and so the very same matrix as the default.

Source of the choice for LZ: the public reproduction of LZ's WS2022/WS2024 models (mhliu0001/diamx,
``LZ_model.cpp``) calls ``GetQuanta(yields, rho, NRERWidthsParam, false, 0.)`` with the comment
"Turn off skewness model", for both detectors.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..detector import ER_SKEWNESS_MODEL, NEST_MODEL_SENTINEL

__all__ = ["skewness_argument", "uses_event_path", "run_events"]


def skewness_argument(detector: Mapping[str, Any]) -> float:
    """``GetQuanta``'s ``SkewnessER`` for this detector: −999 (NEST's model) or the fixed α."""
    value = detector.get("er_skewness", ER_SKEWNESS_MODEL)
    return NEST_MODEL_SENTINEL if value == ER_SKEWNESS_MODEL else float(value)


def uses_event_path(detector: Mapping[str, Any], base_type: str) -> bool:
    """Whether this NEST interaction of this detector needs the per-event path: a fixed ER skewness
    and an ER-like type (α never reaches NR)."""
    return detector.get("er_skewness", ER_SKEWNESS_MODEL) != ER_SKEWNESS_MODEL and base_type != "NR"


def run_events(nest_detector: Any, detector: Mapping[str, Any], base_type: str, energies_keV: np.ndarray,
               positions_mm: np.ndarray, seed: int, er: Sequence[float], skewness: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NEST event by event with ``GetQuanta``'s ``SkewnessER = skewness``; NEST's generator seeded
    once with ``seed`` (as ``runNESTvec``). Returns (cS1 [phd], cS2 [phd], S1 hits above threshold,
    raw S2 [phd]) per event, the ``runNESTvec`` fields :func:`lzflow.response.nest.run_nest` reads, as
    magnitudes (``runNESTvec`` stores ``abs``; NEST signs a value to flag it failing a threshold)."""
    import nestpy

    calc = nestpy.NESTcalc(nest_detector)
    g2 = calc.CalculateG2(0)
    rho = calc.SetDensity(nest_detector.get_T_Kelvin(), nest_detector.get_p_bar())
    itype = getattr(nestpy.interactions, base_type)
    yields = detector["yields"]
    nr, widths = [float(v) for v in yields["nr"]], [float(v) for v in yields["widths"]]
    er = [float(v) for v in er]
    s1m = getattr(nestpy.S1CalculationMode, detector.get("s1_mode", "Hybrid"))
    s2m = getattr(nestpy.S2CalculationMode, detector.get("s2_mode", "Full"))
    t_k, p_bar = nest_detector.get_T_Kelvin(), nest_detector.get_p_bar()
    molar, top = nest_detector.get_molarMass(), nest_detector.get_TopDrift()
    fixed = detector.get("drift_field_V_cm")
    n = len(energies_keV)
    cs1, cs2, nhits, s2raw = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64), np.empty(n)
    nestpy.RandomGen.rndm().set_seed(int(seed))
    for i in range(n):
        x, y, z = (float(v) for v in positions_mm[i])
        energy = float(energies_keV[i])
        fld = float(fixed) if fixed is not None else nest_detector.FitEF(x, y, z)
        ylds = calc.GetYields(itype, energy, rho, fld, molar, 54.0, nr, er)
        quanta = calc.GetQuanta(ylds, rho, widths, skewness)
        v_drift = calc.SetDriftVelocity(t_k, rho, fld, p_bar)
        s1 = calc.GetS1(quanta, x, y, z, x, y, z, v_drift, v_drift, itype, 0, fld, energy, s1m, -1, [], [])
        s2 = calc.GetS2(quanta.electrons, x, y, z, x, y, z, (top - z) / v_drift, v_drift, 0, fld, s2m, -1,
                        [], [], g2)
        cs1[i], nhits[i], cs2[i], s2raw[i] = abs(s1[5]), abs(int(s1[8])), abs(s2[7]), abs(s2[6])
    return cs1, cs2, nhits, s2raw
