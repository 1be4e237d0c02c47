"""NEST's ER recombination skewness as a detector choice (``er_skewness``, lzflow.response.skewness),
on real NEST output."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from lzflow.config import load_yaml
from lzflow.detector import DetectorError, build_nest_detector, detector_hash, resolve_detector
from lzflow.response.nest import run_nest, sample_positions, simulate_direct
from lzflow.response.skewness import run_events, skewness_argument, uses_event_path
from lzflow.space import AnalysisSpace

nestpy = pytest.importorskip("nestpy")


@pytest.fixture(scope="module")
def ws2024_raw():
    return load_yaml("config/detector/lz_ws2024.yaml")


@pytest.fixture(scope="module")
def ws2024(ws2024_raw):
    return resolve_detector(ws2024_raw)


@pytest.fixture(scope="module")
def ws2024_off(ws2024_raw):
    return resolve_detector({**ws2024_raw, "er_skewness": 0})


def test_default_is_nest_and_keeps_the_hash(ws2024):
    assert ws2024["er_skewness"] == "nest"
    # the hash of a default detector is that of its content without the key (as before it existed)
    content = {k: v for k, v in ws2024.items() if k not in ("hash", "name", "er_skewness")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert ws2024["hash"] == hashlib.sha256(text.encode()).hexdigest() == detector_hash(ws2024)


def test_fixed_skewness_is_recorded_and_changes_the_hash(ws2024, ws2024_off):
    assert ws2024_off["er_skewness"] == 0.0
    assert ws2024_off["hash"] != ws2024["hash"]
    assert skewness_argument(ws2024) == -999.0 and skewness_argument(ws2024_off) == 0.0
    assert uses_event_path(ws2024_off, "beta") and uses_event_path(ws2024_off, "gammaRay")
    assert not uses_event_path(ws2024_off, "NR") and not uses_event_path(ws2024, "beta")


@pytest.mark.parametrize("value, fragment", [
    ("off", "'off'; expected 'nest'"),
    (False, "False (YAML reads an unquoted off/no as false)"),
    (-999, "-999; expected"),
    (float("nan"), "nan; expected"),
    ("gaussian", "'gaussian'; expected"),
])
def test_bad_values_are_refused_in_one_line(ws2024_raw, value, fragment):
    with pytest.raises(DetectorError) as err:
        resolve_detector({**ws2024_raw, "er_skewness": value})
    text = str(err.value)
    assert "\n" not in text and text.startswith("detector.er_skewness: ") and fragment in text


def test_event_path_at_nests_model_reproduces_runnestvec(ws2024):
    """α = −999 (NEST's model) through the per-event path gives runNESTvec's events bit for bit,
    so a fixed α changes the skewness and nothing else."""
    nd = build_nest_detector(ws2024)
    rng = np.random.default_rng(3)
    n = 1500
    energies = np.exp(np.log(1.0) + np.log(30.0) * rng.random(n))
    positions = sample_positions(rng, n, ws2024["fiducial"])
    y = ws2024["yields"]
    res = nestpy.array.runNESTvec(nd, nestpy.interactions.beta, energies, positions, -1.0, 4242, y["er"], y["nr"],
                                  y["widths"], nestpy.S1CalculationMode.Hybrid, nestpy.S2CalculationMode.Full, False)
    cs1, cs2, nhits, s2r = run_events(nd, ws2024, "beta", energies, positions, 4242, y["er"], -999.0)
    assert np.array_equal(cs1, np.asarray(res.s1c_phd)) and np.array_equal(cs2, np.asarray(res.s2c_phd))
    assert np.array_equal(nhits, np.asarray(res.s1_nhits_thr)) and np.array_equal(s2r, np.asarray(res.s2r_phd))
    # and the NR response of an er_skewness detector is runNESTvec's (α never reaches NR)
    space = AnalysisSpace()
    off = {**ws2024, "er_skewness": 0.0}
    for a, b in zip(run_nest(nd, ws2024, "NR", energies, positions, 9, space),
                    run_nest(nd, off, "NR", energies, positions, 9, space)):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("interaction", ["beta", "gammaRay"])
def test_event_path_reproduces_runnestvec_at_a_fixed_field(interaction):
    """The projection detector (a fixed 310 V/cm, no field map), β and γ: the same identity."""
    det = resolve_detector(load_yaml("config/detector/lz_projection.yaml"))
    nd = build_nest_detector(det)
    rng = np.random.default_rng(1)
    energies = rng.uniform(1.0, 20.0, 800)
    positions = sample_positions(rng, 800, det["fiducial"])
    y = det["yields"]
    res = nestpy.array.runNESTvec(nd, getattr(nestpy.interactions, interaction), energies, positions,
                                  det["drift_field_V_cm"], 77, y["er"], y["nr"], y["widths"],
                                  nestpy.S1CalculationMode.Hybrid, nestpy.S2CalculationMode.Full, False)
    got = run_events(nd, det, interaction, energies, positions, 77, y["er"], -999.0)
    for a, b in zip(got, (res.s1c_phd, res.s2c_phd, res.s1_nhits_thr, res.s2r_phd)):
        assert np.array_equal(a, np.asarray(b))


def _electrons(detector, energy_keV, n, alpha, seed):
    nd = build_nest_detector(detector)
    calc = nestpy.NESTcalc(nd)
    rho = calc.SetDensity(nd.get_T_Kelvin(), nd.get_p_bar())
    y = detector["yields"]
    field = nd.FitEF(0.0, 0.0, 700.0)
    nestpy.RandomGen.rndm().set_seed(seed)
    ne = np.empty(n)
    for i in range(n):
        ylds = calc.GetYields(nestpy.interactions.beta, energy_keV, rho, field, nd.get_molarMass(), 54.0,
                              y["nr"], y["er"])
        ne[i] = calc.GetQuanta(ylds, rho, y["widths"], alpha).electrons
    return ne


def _skew(x):
    d = x - x.mean()
    return float(np.mean(d**3) / np.mean(d**2) ** 1.5)


def test_electrons_at_10keV_gaussian_without_skewness_same_mean(ws2024, ws2024_off):
    """N_e of 10 keV ER at the WS2024 field (FitEF, ≈ 96.5 V/cm): skewness ≈ +0.7 with NEST's model
    (docs/ws2024.md: +0.70), ≈ 0 with SkewnessER = 0; NEST's skew-normal keeps the mean, so both means
    agree within the MC error (src/NEST.cpp's muCorrection)."""
    n = 40000
    on = _electrons(ws2024, 10.0, n, skewness_argument(ws2024), 11)
    off = _electrons(ws2024_off, 10.0, n, skewness_argument(ws2024_off), 12)
    se_skew = np.sqrt(6.0 / n)  # standard error of a sample skewness
    assert _skew(on) == pytest.approx(0.70, abs=0.1)
    assert abs(_skew(off)) < 4 * se_skew + 0.03  # + Poisson-integer rounding of N_e
    se_mean = np.hypot(on.std(), off.std()) / np.sqrt(n)
    assert abs(on.mean() - off.mean()) < 4 * se_mean
    assert off.std() == pytest.approx(on.std(), rel=0.03)  # the variance is NEST's V either way


@pytest.mark.slow
def test_leakage_below_nr_median_rises_by_the_measured_factor(ws2024, ws2024_off):
    """Flat ER 1.5–6.5 keV below the flat-NR (6–30 keVnr) median, WS2024 detector and ROI, event by
    event (NR median per 1.925 phd cS1 bin): the direct measurement outside the package was
    0.028 ± 0.002 % with NEST's skewness model and 0.099 ± 0.005 % without, ×3.5 (docs/ws2024.md).
    Here through lzflow's own response path (run_nest); each within 3σ (MC ⊕ reference error)."""
    space = AnalysisSpace()
    rng = np.random.default_rng(5)
    e_er, e_nr = rng.uniform(1.5, 6.5, 600_000), rng.uniform(6.0, 30.0, 400_000)

    def events(det, interaction, energies, seed):
        cs1, y, ok = simulate_direct(det, interaction, energies, seed=seed, space=space)
        return cs1[ok], y[ok]

    cs1_edges = np.linspace(space.cs1_min, space.cs1_max, space.cs1_bins + 1)
    nr_x, nr_y = events(ws2024, "NR", e_nr, 1)
    rows = np.clip(np.searchsorted(cs1_edges, nr_x, side="right") - 1, 0, space.cs1_bins - 1)
    median = np.array([np.median(nr_y[rows == i]) if np.any(rows == i) else -np.inf for i in range(space.cs1_bins)])
    leak = {}
    for name, det in (("nest", ws2024), ("off", ws2024_off)):
        x, y = events(det, "beta", e_er, 2)
        i = np.clip(np.searchsorted(cs1_edges, x, side="right") - 1, 0, space.cs1_bins - 1)
        leak[name] = (int(np.sum(y < median[i])), x.size)
    (k_on, n_on), (k_off, n_off) = leak["nest"], leak["off"]
    for (k, n), ref, ref_err in ((leak["nest"], 0.00028, 0.00002), (leak["off"], 0.00099, 0.00005)):
        assert k / n == pytest.approx(ref, abs=3 * np.hypot(np.sqrt(k) / n, ref_err)), (k, n)
    ratio = (k_off / n_off) / (k_on / n_on)
    sigma = ratio * np.sqrt(1 / k_on + 1 / k_off + (0.3 / 3.5) ** 2)
    assert abs(ratio - 3.5) < 3 * sigma and ratio > 2.0, (ratio, sigma)


@pytest.mark.slow
def test_matrix_without_skewness_is_bit_identical_across_workers(ws2024, ws2024_off):
    """The per-event path is seeded per chunk like runNESTvec's: one worker or two, same counts; and
    its β matrix differs from NEST's model's (the NR one does not)."""
    from lzflow.response.matrix import build_responses

    kw = dict(n_total=60_000, n_pilot=8_000, seed=3, chunk_size=1 << 13)
    one = build_responses(ws2024_off, ["beta", "NR"], n_workers=1, **kw)
    two = build_responses(ws2024_off, ["beta", "NR"], n_workers=2, **kw)
    assert one["beta"] == two["beta"] and one["NR"] == two["NR"]
    assert one["beta"].metadata["er_skewness"] == 0.0
    model = build_responses(ws2024, ["beta", "NR"], n_workers=1, **kw)
    assert "er_skewness" not in model["beta"].metadata
    assert np.array_equal(model["NR"].counts, one["NR"].counts)
    assert not np.array_equal(model["beta"].counts, one["beta"].counts)


def test_ws2024_configs_turn_the_skewness_off_and_name_a_bad_override():
    """The WS2024-like configs (pooled and two-run, via base:) resolve with er_skewness 0 for every
    detector; a bad override is named where it was written."""
    from lzflow.config import ConfigError, load_config, load_config_stack
    from lzflow.runsconfig import resolve_runs

    assert load_config("config/lz_ws2024_quick.yaml")["detector"]["er_skewness"] == 0.0
    runs = resolve_runs(load_config_stack(["config/lz_ws2022_ws2024_quick.yaml"]))["runs"]
    assert {name: run["detector"]["er_skewness"] for name, run in runs.items()} == {"ws2022": 0.0, "ws2024": 0.0}
    with pytest.raises(ConfigError, match=r"^detector_overrides\.er_skewness: False \(YAML reads an unquoted"):
        load_config("config/lz_ws2024_quick.yaml", overrides={"detector_overrides": {"er_skewness": False}})
