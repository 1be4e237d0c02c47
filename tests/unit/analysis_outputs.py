"""Real analysis outputs for the plot and report tests, made by lzflow's own stages from the default
analysis's 40 GeV workspace (tests/data/workspace_m40.json.gz): toys on a POI grid from 0.05 to 4.5
asymptotic σ_μ (its upper points have CLs+b = 0/N), merge, impacts, the fit-error summary, the
projection detector, the limit curve with its reference comparison, and every plot."""

from __future__ import annotations

import copy
import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

REPO = Path(__file__).resolve().parents[2]
#: merge settings: the analysis's (config.yaml), fewer bootstrap replicates, no grid extension
SPEC = {"cl": 0.9, "method": "CLs+b", "power_threshold": 0.1587, "test_statistic": "qtilde", "n_boot": 20,
        "max_refine_rounds": 0}


@lru_cache(maxsize=None)
def _merged(n_sb: int, n_b: int) -> tuple[str, str, list]:
    from lzflow.io import write_json
    from lzflow.merge import limit_document
    from lzflow.toyjobs import run_toy_job

    ws = json.loads(gzip.decompress((REPO / "tests" / "data" / "workspace_m40.json.gz").read_bytes()))
    sigma_mu = ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"] / norm.isf(0.1)
    ws["poi_grid"] = (np.array([0.05, 0.3, 0.8, 1.3, 1.9, 2.6, 3.5, 4.5]) * sigma_mu).tolist()
    base = {"n_jobs": 1, "seed": 5, "test_statistic": "qtilde", "job_index": 0}
    files = []
    for k in range(len(ws["poi_grid"])):
        result, header = run_toy_job(ws, dict(base, hypothesis="sb", poi_index=k, n_toys=n_sb))
        files.append((f"m40/toys/poi{k}/job0.npz", _arrays(result), header))
    result, header = run_toy_job(ws, dict(base, hypothesis="b", n_toys=n_b))
    files.append(("m40/toys/bonly/job0.npz", _arrays(result), header))
    doc, _ = limit_document(ws, lambda: files, SPEC)
    # through strict JSON, as every reader gets it (non-finite numbers as null)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_json(Path(tmp) / "limit.json", doc)
        text = (Path(tmp) / "limit.json").read_text()
    return text, json.dumps(ws), files


def _arrays(result: Any) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(getattr(result, name)) for name in result.PER_TOY}
    arrays["mu_test"] = np.asarray(result.mu_test)
    arrays["gen_params"] = np.asarray(result.gen_params)
    return arrays


def merged_limit(n_sb: int = 150, n_b: int = 300) -> tuple[dict[str, Any], dict[str, Any], list]:
    """(limit.json document, workspace, toy files) of the 40 GeV mass; fresh copies each call."""
    text, ws, files = _merged(n_sb, n_b)
    return json.loads(text), json.loads(ws), copy.deepcopy(files)


def write_inputs(out: Path, **changes: Any) -> dict[str, Any]:
    """Every input of :func:`lzflow.report.build_report` for the 40 GeV mass, written below ``out``
    by lzflow's stages; returns build_report's keyword arguments. ``changes``: ``doc`` (a function
    editing the limit document before anything reads it), ``detector_name``, ``studies`` (a list of
    (name, variant label) to write a one-row study table for), ``figures`` (the keyword arguments of an
    earlier call, whose plots and impacts are copied rather than made again)."""
    from lzflow.config import load_config_stack, load_yaml, resolve_config
    from lzflow.curve import curve_rows, plot_limit_curve, plot_pvalues, plot_teststat, write_curve_csv
    from lzflow.detector import derived_quantities, resolve_detector
    from lzflow.fit_errors import summarise_loaded
    from lzflow.impacts import impacts
    from lzflow.io import write_json
    from lzflow.references import compare_with_reference, load_reference, write_comparison
    from lzflow.workspace import workspace_model

    doc, ws, files = merged_limit()
    if "doc" in changes:
        changes["doc"](doc)
    config = resolve_config(load_config_stack([REPO / "config" / "quick.yaml"]), base_dir=REPO)
    mass = out / "m40"
    mass.mkdir(parents=True, exist_ok=True)
    write_json(mass / "limit.json", doc)
    rows = curve_rows([doc])
    write_curve_csv(out / "limit_curve.csv", rows)
    reference = load_reference(config["reference"])
    write_comparison(out / "reference_comparison.csv", compare_with_reference(rows, reference))
    earlier = changes.get("figures")
    if earlier:
        for key, path in (("curve_png", out / "limit_curve.png"), ("pvalue_pngs", mass / "pvalues.png"),
                          ("teststat_pngs", mass / "teststat.png"), ("impact_paths", mass / "impacts.json")):
            source = earlier[key] if isinstance(earlier[key], Path) else earlier[key][0]
            path.write_bytes(Path(source).read_bytes())
    else:
        plot_limit_curve(rows, out / "limit_curve.png", title="test", reference=reference)
        plot_pvalues(doc, mass / "pvalues.png")
        plot_teststat(doc, mass / "teststat.png")
        write_json(mass / "impacts.json", {"mass_GeV": ws["mass_GeV"],
                                           **impacts(workspace_model(ws), SPEC, ws["sigma_ref_cm2"])})
    write_json(out / "fit_errors.json", summarise_loaded(files))
    detector = resolve_detector(load_yaml(REPO / "config" / "detector" / "lz_projection.yaml"))
    detector["derived"] = derived_quantities(detector)  # as lzflow detector writes it
    if "detector_name" in changes:
        detector["name"] = changes["detector_name"]
    write_json(out / "detector.json", detector)
    studies = []
    for name, variant in changes.get("studies", []):
        table = out / "studies" / name / "table.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text("mass_GeV,variant,value,parameter,sigma_median_cm2,sigma_median_err_cm2,change_median_pct,"
                         "sigma_asymptotic_median_cm2,change_asymptotic_pct,n_toys,toy_jobs_wall_s\n"
                         f"40.0,{variant},0.118735,detector.g1,1.2e-48,1e-50,3.5,1.1e-48,2.0,150,1.5\n")
        (table.parent / "overlay.png").write_bytes((out / "limit_curve.png").read_bytes())
        studies.append({"name": name, "table": table, "overlay": table.parent / "overlay.png"})
    return dict(config=config, curve_csv=out / "limit_curve.csv", curve_png=out / "limit_curve.png",
                limit_paths=[mass / "limit.json"], pvalue_pngs=[mass / "pvalues.png"],
                teststat_pngs=[mass / "teststat.png"], errors_json=out / "fit_errors.json",
                detector_json=out / "detector.json", studies=studies, code_hashes={"report": "0123456789abcdef"},
                reference_comparison=out / "reference_comparison.csv", impact_paths=[mass / "impacts.json"])
