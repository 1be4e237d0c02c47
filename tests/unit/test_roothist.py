"""PDF TH2D files (lzflow.roothist via lzflow.pdfs.write_pdf): ROOT fill statistics of weighted MC
events, titles, and bin contents unchanged bit for bit."""

from __future__ import annotations

import hist
import numpy as np
import pytest
import uproot

from lzflow import pdfs as P
from lzflow.roothist import ZAXIS_TITLE, effective_entries, pdf_title

from test_pdfs import _synthetic_response  # noqa: E402  (tests/ is on sys.path under pytest)
from test_response import DET, SPACE  # noqa: E402

SIGNAL = {"kind": "signal", "mass_GeV": 40.0, "sigma_ref_cm2": 1e-45, "exposure_t_yr": 4.2163}


def _spectrum(resp) -> np.ndarray:
    """Per-energy-bin expected events, zero above 20 keV, so that some simulated rows carry no weight."""
    centres = np.sqrt(resp.energy_edges[1:] * resp.energy_edges[:-1])
    return np.where(centres < 20.0, 50.0 * np.exp(-centres / 8.0), 0.0)


def _th2(path, name):
    with uproot.open(path) as f:
        return f[name]


def test_statistics_are_those_of_the_weighted_mc_fills(tmp_path):
    resp = _synthetic_response()
    p = _spectrum(resp)
    meta = P.make_pdf(resp, "wimp_m40", p, tmp_path, detector=DET, n_samples=1e6, seed=7, source_metadata=SIGNAL)
    h = _th2(tmp_path / "wimp_m40.root", "wimp_m40")
    # independently: per-event weights w_j = p_j / N_j; every in-ROI event of row j is one fill
    n = resp.n_sim.astype(float)
    w = np.divide(p, n, out=np.zeros_like(p), where=n > 0)
    filled = w > 0
    row_events = resp.counts.reshape(len(n), -1).sum(axis=1)
    assert 0 < filled.sum() < (n > 0).sum()  # the test spectrum leaves some simulated rows without weight
    sum_w = float((w * row_events).sum())
    sum_w2 = float((w**2 * row_events).sum())
    assert h.member("fEntries") == row_events[filled].sum() == meta["histogram"]["mc_events"]
    assert h.member("fTsumw") == pytest.approx(sum_w, rel=1e-12)
    assert h.member("fTsumw2") == pytest.approx(sum_w2, rel=1e-12)
    # ROOT's TH1::GetEffectiveEntries() = fTsumw^2 / fTsumw2 is the Kish n_eff of the sidecar
    n_eff = h.member("fTsumw") ** 2 / h.member("fTsumw2")
    assert n_eff == pytest.approx(sum_w**2 / sum_w2, rel=1e-12)
    assert n_eff == pytest.approx(meta["n_eff_roi"], rel=1e-12)
    assert n_eff < h.member("fEntries")  # unequal weights: fewer effective than filled events
    # moments at the bin centres
    vals = h.values()
    xc, yc = SPACE.cs1_edges[:-1] + np.diff(SPACE.cs1_edges) / 2, SPACE.log10cs2_edges[:-1] + np.diff(SPACE.log10cs2_edges) / 2
    X, Y = np.meshgrid(xc, yc, indexing="ij")
    for key, ref in (("fTsumwx", X), ("fTsumwx2", X**2), ("fTsumwy", Y), ("fTsumwy2", Y**2), ("fTsumwxy", X * Y)):
        assert h.member(key) == pytest.approx(float((vals * ref).sum()), rel=1e-12), key
    # titles
    assert h.member("fTitle") == ("wimp_m40 signal (NR, 40 GeV WIMP): expected events per bin at "
                                  "sigma_{ref} = 1e-45 cm^{2}, 4.216 t yr")
    assert h.member("fZaxis").member("fTitle") == ZAXIS_TITLE == "expected events / bin"
    assert h.member("fXaxis").member("fTitle") == "cS1 [phd]"
    assert h.member("fYaxis").member("fTitle") == "log10(cS2 [phd])"


def test_bin_contents_bit_identical_to_the_plain_uproot_writer(tmp_path):
    """Only statistics and titles change: every bin (flow included), error and edge is what uproot's
    own conversion of the hist.Hist writes, and read_pdf returns the fold bit for bit."""
    resp = _synthetic_response()
    fold = P.fold_spectrum(resp, _spectrum(resp))
    h = P.pdf_histogram(fold, SPACE, name="s")
    P.write_pdf(tmp_path, "s", h, {"source": "s", "empty": False, "histogram": {"mc_events": fold.n_mc_events}})
    with uproot.recreate(tmp_path / "plain.root") as f:
        f["s"] = h
    new, old = _th2(tmp_path / "s.root", "s"), _th2(tmp_path / "plain.root", "s")
    assert np.array_equal(new.values(flow=True), old.values(flow=True))
    assert np.array_equal(new.variances(flow=True), old.variances(flow=True))
    for ax in ("fXaxis", "fYaxis"):
        for key in ("fName", "fTitle", "fNbins", "fXmin", "fXmax"):
            assert new.member(ax).member(key) == old.member(ax).member(key), (ax, key)
        assert np.array_equal(np.asarray(new.member(ax).member("fXbins")), np.asarray(old.member(ax).member("fXbins")))
    back, _ = P.read_pdf(tmp_path, "s")
    assert np.array_equal(back.values(), fold.expected) and np.array_equal(back.variances(), fold.variance)
    assert [a.name for a in back.axes] == ["cS1", "log10cS2"]
    assert [a.name for a in new.to_hist().axes] == ["xaxis", "yaxis"]  # what read_pdf exists for


def test_without_mc_count_entries_are_effective_and_bad_counts_rejected(tmp_path):
    values = np.array([[1.0, 2.0], [0.5, 0.0]])
    variances = np.array([[0.1, 0.4], [0.05, 0.0]])
    h = hist.Hist(hist.axis.Regular(2, 0.0, 2.0, name="cS1", label="cS1 [phd]"),
                  hist.axis.Regular(2, 2.0, 3.0, name="log10cS2"), storage=hist.storage.Weight())
    h.view().value, h.view().variance = values, variances
    P.write_pdf(tmp_path, "bkg", h, {"source": "bkg"})
    th = _th2(tmp_path / "bkg.root", "bkg")
    assert th.member("fEntries") == pytest.approx(3.5**2 / 0.55, rel=1e-14)
    assert effective_entries(values, variances) == pytest.approx(3.5**2 / 0.55, rel=1e-14)
    assert th.member("fTsumw2") == pytest.approx(0.55, rel=1e-14)
    assert th.member("fTitle") == "bkg: expected events per bin"
    for bad in (-1, "many", True):
        with pytest.raises(ValueError, match=r"pdf_th2d: entries = .*expected a finite number >= 0"):
            P.write_pdf(tmp_path, "bad", h, {"source": "bad", "histogram": {"mc_events": bad}})
    assert not list(tmp_path.glob("bad*"))


def test_empty_pdf_statistics_and_titles(tmp_path):
    resp = _synthetic_response()
    with pytest.warns(RuntimeWarning, match="no expected event"):
        P.make_pdf(resp, "wimp_m2", lambda E: np.where(E < 1.5, 1.0, 0.0), tmp_path, detector=DET,
                   n_samples=1e6, seed=1, full_range_keV=(0.0, 1.5), source_metadata={"kind": "signal", "mass_GeV": 2.0})
    th = _th2(tmp_path / "wimp_m2.root", "wimp_m2")
    assert (th.member("fEntries"), th.member("fTsumw"), th.member("fTsumw2")) == (0.0, 0.0, 0.0)
    assert th.member("fTitle") == "wimp_m2 signal (NR, 2 GeV WIMP): expected events per bin, empty (no event in the ROI)"
    assert pdf_title({"source": "Kr85", "kind": "background", "recoil": "ER", "interaction": "beta"}) == \
        "Kr85 background (ER from beta): expected events per bin"


def test_root_reads_the_statistics(tmp_path):
    """With ROOT installed (optional): GetEntries, GetEffectiveEntries, GetMean and the titles, and
    TH1::ResetStats (statistics recomputed from the bins) changes nothing but fEntries."""
    ROOT = pytest.importorskip("ROOT")
    import array

    resp = _synthetic_response()
    meta = P.make_pdf(resp, "wimp_m40", _spectrum(resp), tmp_path, detector=DET, n_samples=1e6, seed=7,
                      source_metadata=SIGNAL)
    f = ROOT.TFile.Open(str(tmp_path / "wimp_m40.root"))
    h = f.Get("wimp_m40")
    assert h.GetEntries() == meta["histogram"]["mc_events"]
    assert h.GetEffectiveEntries() == pytest.approx(meta["n_eff_roi"], rel=1e-12)
    assert h.GetZaxis().GetTitle() == ZAXIS_TITLE and "40 GeV WIMP" in h.GetTitle()
    vals = P.read_pdf(tmp_path, "wimp_m40")[0].values()
    xc = SPACE.cs1_edges[:-1] + np.diff(SPACE.cs1_edges) / 2
    assert h.GetMean(1) == pytest.approx(float((vals.sum(axis=1) * xc).sum() / vals.sum()), rel=1e-12)
    s, s2 = array.array("d", [0.0] * 7), array.array("d", [0.0] * 7)
    h.GetStats(s)
    c = h.Clone("c")
    c.ResetStats()
    c.GetStats(s2)
    np.testing.assert_allclose(s2, s, rtol=1e-12)
    f.Close()


def test_readme_recipe_runs(tmp_path):
    """README's "Reading the PDFs" code block runs on a written PDF, and its uproot + hist recipe
    gives read_pdf's axis names and contents."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Reading the PDFs", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'read_pdf("results/lz_projection/pdfs", "B8")' in code
    resp = _synthetic_response()
    P.make_pdf(resp, "B8", _spectrum(resp), tmp_path, detector=DET, n_samples=1e6, seed=7)
    exec(compile(code.replace("results/lz_projection/pdfs", str(tmp_path)), "README.md", "exec"), {})
    recipe = re.search(r"`u = (uproot.open.*?)`, then `h = (hist.Hist.*?)`\s+and `(h.view.*?)`", section, re.S)
    ns = {"hist": hist, "uproot": uproot}
    exec("u = " + recipe.group(1).replace(".../B8.root", str(tmp_path / "B8.root")), ns)
    exec("h = " + recipe.group(2).replace("\n", " "), ns)
    exec(recipe.group(3), ns)
    ref, _ = P.read_pdf(tmp_path, "B8")
    assert ns["h"].axes.name == ref.axes.name == ("cS1", "log10cS2")
    assert np.array_equal(ns["h"].values(), ref.values()) and np.array_equal(ns["h"].variances(), ref.variances())


def test_editing_the_writer_reruns_the_pdf_stage(tmp_path, monkeypatch):
    """roothist.py writes the PDF files: editing it changes the pdf stage's code hash and no other."""
    import shutil
    from pathlib import Path

    import lzflow
    from lzflow import stagecode

    package = tmp_path / "lzflow"
    shutil.copytree(Path(lzflow.__file__).parent, package)
    monkeypatch.setattr(stagecode, "PACKAGE_DIR", package)
    stagecode.stage_code_hash.cache_clear()
    before = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
    (package / "roothist.py").write_text((package / "roothist.py").read_text() + "\n# edited\n")
    stagecode.stage_code_hash.cache_clear()
    after = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
    stagecode.stage_code_hash.cache_clear()
    assert {stage for stage in before if before[stage] != after[stage]} == {"pdf"}
