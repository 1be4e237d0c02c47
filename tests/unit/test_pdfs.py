"""PDFs: hist/ROOT/JSON round trip, empty sources, atomic writes, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lzflow import pdfs as P
from lzflow.response import ResponseMatrix, build_response, load_response, save_response
from lzflow.response.allocation import energy_edges

from test_response import BUILDER, DET, SPACE  # noqa: E402  (tests/ is on sys.path under pytest)


def _synthetic_response(seed: int = 0) -> ResponseMatrix:
    """A small hand-made matrix (no NEST): 100 energy bins 1–100 keV, active 2–50 keV."""
    rng = np.random.default_rng(seed)
    edges = energy_edges(1.0, 100.0, 50)
    nE = len(edges) - 1
    c = np.sqrt(edges[1:] * edges[:-1])
    n_sim = np.where((c > 2) & (c < 50), 1000, 0).astype(np.int64)
    counts = np.zeros((nE, *SPACE.shape), dtype=np.int64)
    for j in np.flatnonzero(n_sim):
        k = rng.binomial(n_sim[j], 0.8)
        ix = np.clip((c[j] * 1.5 + rng.normal(0, 3, k) - SPACE.cs1_min) / (77 / SPACE.cs1_bins), 0,
                     SPACE.cs1_bins - 1).astype(int)
        iy = np.clip(rng.normal(20, 3, k), 0, SPACE.log10cs2_bins - 1).astype(int)
        np.add.at(counts[j], (ix, iy), 1)
    return ResponseMatrix(interaction="NR", energy_edges=edges, space=SPACE, counts=counts, n_sim=n_sim,
                            eps_pilot=np.where(n_sim > 0, 0.8, 1e-9),
                            metadata={"n_total": int(n_sim.sum()), "seed": seed})


def test_pdf_root_json_roundtrip(tmp_path):
    resp = _synthetic_response()
    meta = P.make_pdf(resp, "wimp_m40", lambda E: 100 * np.exp(-E / 10), tmp_path, detector=DET, n_samples=1e6,
                      seed=7, full_range_keV=(0.0, np.inf),
                      source_metadata={"kind": "signal", "mass_GeV": 40.0, "sigma_ref_cm2": 1e-45})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wimp_m40.json", "wimp_m40.root"]
    h, back = P.read_pdf(tmp_path, "wimp_m40")
    fold = P.fold_spectrum(resp, lambda E: 100 * np.exp(-E / 10), full_range_keV=(0.0, np.inf))
    np.testing.assert_array_equal(h.values(), fold.expected)
    np.testing.assert_array_equal(h.variances(), fold.variance)
    np.testing.assert_allclose(h.axes[0].edges, SPACE.cs1_edges)
    np.testing.assert_allclose(h.axes[1].edges, SPACE.log10cs2_edges)
    assert back == json.loads(json.dumps(meta))
    for key in ("source", "recoil", "interaction", "expected_events", "efficiency", "n_samples",
                "n_samples_effective", "n_eff_roi", "seed", "detector_hash", "binning", "roi", "lzflow_version",
                "empty", "sigma_ref_cm2"):
        assert key in back, key
    assert back["empty"] is False and "warning" not in back
    assert back["expected_events"] == pytest.approx(h.values().sum())
    assert back["efficiency"] == pytest.approx(fold.efficiency) and back["recoil"] == "NR"
    assert back["detector_hash"] == DET["hash"] and back["sigma_ref_cm2"] == 1e-45
    # uproot sees a TH2D named after the source, values and edges identical
    import uproot

    with uproot.open(tmp_path / "wimp_m40.root") as f:
        obj = f["wimp_m40"]
        assert obj.classname == "TH2D"
        np.testing.assert_array_equal(obj.values(), fold.expected)
        np.testing.assert_allclose(obj.axis(0).edges(), SPACE.cs1_edges)


def test_empty_source_is_flagged(tmp_path):
    resp = _synthetic_response()
    # a spectrum that lives only below the active range (like a 2 GeV WIMP): nothing in the ROI
    with pytest.warns(RuntimeWarning, match="no expected event"):
        meta = P.make_pdf(resp, "wimp_m2", lambda E: np.where(E < 1.5, 1.0, 0.0), tmp_path, detector=DET,
                          n_samples=1e6, seed=1, full_range_keV=(0.0, 1.5))
    assert meta["empty"] is True and meta["expected_events"] == 0 and "warning" in meta
    h, back = P.read_pdf(tmp_path, "wimp_m2")
    assert back["empty"] is True and "no expected event" in back["warning"]
    assert not np.any(h.values())
    # an all-zero histogram is never written silently ...
    fold = P.fold_spectrum(resp, lambda E: np.where(E < 1.5, 1.0, 0.0))
    zero = P.pdf_histogram(fold, SPACE, name="z")
    with pytest.raises(ValueError, match="all-zero"):
        P.write_pdf(tmp_path, "z", zero, {"empty": False})
    with pytest.raises(ValueError, match="all-zero"):
        P.write_pdf(tmp_path, "z", zero, {})
    # ... and 'empty' cannot be claimed for a non-zero one
    full = P.pdf_histogram(P.fold_spectrum(resp, lambda E: np.ones_like(E)), SPACE, name="f")
    with pytest.raises(ValueError, match="non-zero"):
        P.write_pdf(tmp_path, "f", full, {"empty": True})
    assert not list(tmp_path.glob("z.*")) and not list(tmp_path.glob("f.*"))


def test_real_2gev_wimp_is_empty(tmp_path, nr_small):
    sources = pytest.importorskip("lzflow.sources")
    spec = dict(mass_GeV=2.0, mass_label="2", sigma_ref_cm2=1e-45,
                halo={"rho_GeV_cm3": 0.3, "v0_km_s": 238.0, "vesc_km_s": 544.0, "v_earth_model": "fixed", "v_earth_km_s": 232.0}, exposure_t_yr=15.33)
    src = sources.wimp_source(spec)
    with pytest.warns(RuntimeWarning):
        meta = P.make_pdfs(DET, [src], tmp_path, n_samples=1e3, seed=1, responses={"NR": nr_small})["wimp_m2"]
    assert meta["empty"] is True and meta["expected_events"] == 0.0 and meta["efficiency"] == 0.0
    assert meta["spectrum_events"] > 0  # the spectrum exists, it just never reaches the ROI


def test_atomic_writes(tmp_path, monkeypatch):
    import uproot

    resp = _synthetic_response()
    fold = P.fold_spectrum(resp, lambda E: np.exp(-E / 10))
    h = P.pdf_histogram(fold, SPACE, name="s")
    meta = {"empty": False, "source": "s"}
    P.write_pdf(tmp_path, "s", h, meta)
    old_root, old_json = (tmp_path / "s.root").read_bytes(), (tmp_path / "s.json").read_text()

    class Boom(RuntimeError):
        pass

    real_recreate = uproot.recreate

    def failing_recreate(path, *a, **k):
        f = real_recreate(path, *a, **k)

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()
                return False

            def __setitem__(self, key, value):
                raise Boom("crash while writing the histogram")
        return Half()

    monkeypatch.setattr(uproot, "recreate", failing_recreate)
    h2 = P.pdf_histogram(P.fold_spectrum(resp, lambda E: np.exp(-E / 5)), SPACE, name="s")
    with pytest.raises(Boom):
        P.write_pdf(tmp_path, "s", h2, meta)
    with pytest.raises(Boom):
        P.write_pdf(tmp_path, "new", h2, {"empty": False})
    monkeypatch.setattr(uproot, "recreate", real_recreate)
    # the old PDF is intact, the new one does not exist, nothing temporary is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.root"]
    assert (tmp_path / "s.root").read_bytes() == old_root and (tmp_path / "s.json").read_text() == old_json
    # unserialisable metadata fails before anything is written
    with pytest.raises(TypeError):
        P.write_pdf(tmp_path, "new", h2, {"empty": False, "bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.root"]


@pytest.fixture(scope="module")
def nr_small():
    return build_response(DET, "NR", n_total=30_000, n_pilot=10_000, seed=5, n_workers=2, space=SPACE,
                            chunk_size=8192, builder=BUILDER)


def test_pdfs_bit_reproducible(tmp_path, nr_small):
    """Same inputs and seed ⇒ bit-identical histograms (matrix rebuilt from scratch)."""
    f = lambda E: np.exp(-E / 12.0)  # noqa: E731
    again = build_response(DET, "NR", n_total=30_000, n_pilot=10_000, seed=5, n_workers=1, space=SPACE,
                             chunk_size=8192, builder=BUILDER)
    for name, resp in (("a", nr_small), ("b", again)):
        P.make_pdf(resp, name, f, tmp_path, detector=DET, n_samples=1e3, seed=5, full_range_keV=(0.0, 200.0))
    ha, ma = P.read_pdf(tmp_path, "a")
    hb, mb = P.read_pdf(tmp_path, "b")
    assert np.array_equal(ha.values(), hb.values()) and np.array_equal(ha.variances(), hb.variances())
    assert ha.values().sum() > 0
    ma.pop("source"), mb.pop("source"), ma.pop("histogram"), mb.pop("histogram")
    assert ma == mb


def test_pdf_from_response_alone(tmp_path, nr_small):
    """The PDF stage needs only the response file: detector facts and seed come from its metadata."""
    path = save_response(nr_small, tmp_path / "NR.npz")
    resp = load_response(path)
    meta = P.make_pdf(resp, "DetNR", lambda E: 0.5 * np.exp(-E / 20.0), tmp_path / "pdfs", full_range_keV=(0.1, 200.0))
    assert meta["detector_hash"] == DET["hash"] and meta["seed"] == 5 and meta["n_samples"] is None
    assert meta["roi"]["s1_coincidence"] == int(DET["nest"]["coinLevel"])
    assert meta["roi"]["fiducial"] == {k: float(v) for k, v in DET["fiducial"].items()}
    assert meta["expected_events"] > 0 and meta["recoil"] == "NR" and meta["kind"] == "background"
    with pytest.raises(ValueError, match="response made for detector"):
        P.make_pdf(resp, "x", lambda E: np.ones_like(E), tmp_path, detector=dict(DET, hash="other"))
