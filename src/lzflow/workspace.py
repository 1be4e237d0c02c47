"""Workspace stage: one mass's likelihood ingredients, checked, in one file, plus exports.

``results/<tag>/m<mass>/workspace.json`` holds the signal template of that mass (expected events
at σ_ref per (cS1, log10 cS2) bin) and the 11 background templates (expected events at nominal
normalisation) with their Gaussian constraint widths σ_b = rel_unc_b × N_b (N_b the expected count
in the ROI; e.g. pp: N = 542.16, rel 2 % → σ = 10.8). Backgrounds with ``rel_unc = 0`` are fixed
and are removed from every fit consistently (see :mod:`lzflow.stats.model`).

Templates are stored 2D, ``[i_cS1][i_log10cS2]``; flattening for fits and exports is C order
(cS1 slow, log10 cS2 fast), the order :meth:`numpy.ndarray.ravel` uses.

The workspace job (:func:`make_workspace`) also solves the Asimov asymptotic limits of the mass
(CLs+b and CLs, bands, PCL, discovery potential; :mod:`lzflow.stats.asymptotic`) and places the POI
grid of the toys around the asymptotic CLs+b median: ``μ_k = median × linspace(min_factor,
max_factor, n_points)``. An empty signal (no events in the ROI) gives an empty grid and
``no_sensitivity`` documents.

Exports: a pyhf JSON workspace (:func:`lzflow.stats.pyhf_export.to_pyhf_workspace`) and an HS3
(HEP Statistics Serialization Standard) document with a native two-axis ``histfactory_dist`` and
the same parameter names (:mod:`lzflow.hs3`; shape systematics as ``histosys`` (code4p) or, for the
multiplicative morphings, per-bin ``generic_function`` factors, :mod:`lzflow.hs3_logmorph`).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import numpy as np

from . import __version__, layout
from .exceptions import WorkspaceError
from .io import read_json

__all__ = [
    "WorkspaceError",
    "build_workspace",
    "make_workspace",
    "write_workspace",
    "asymptotic_summary",
    "poi_grid",
    "EXPORT_NAMES",
    "workspace_model",
    "read_workspace",
    "load_workspace_file",
    "to_hs3",
    "FORMAT",
    "FORMATS",
    "add_mc_stat",
    "shape_systematics",
    "shape_systematic_models",
]

FORMAT = "lzflow-workspace-1"
#: a workspace with template MC statistics (``mc_stat``, :func:`add_mc_stat`): readers that do not
#: know the γ refuse it instead of reading it without them; without ``mc_stat`` the format stays 1
FORMAT_MCSTAT = "lzflow-workspace-2"
FORMATS = (FORMAT, FORMAT_MCSTAT)

#: the exports written beside ``workspace.json``: pyhf JSON and HS3 (names from :mod:`lzflow.layout`)
EXPORT_NAMES = {"pyhf": PurePosixPath(layout.WORKSPACE_PYHF).name, "hs3": PurePosixPath(layout.WORKSPACE_HS3).name,
                "impacts": PurePosixPath(layout.IMPACTS).name}


def read_template(root_path: str | Path) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:
    """A PDF written by the pdf stage as arrays: (values (n_cS1, n_log10cS2), [edges_x, edges_y], sidecar)."""
    from .pdfs import read_pdf

    root_path = Path(root_path)
    hist, meta = read_pdf(root_path.parent, root_path.stem)
    return (np.asarray(hist.values(), dtype=np.float64),
            [np.asarray(axis.edges, dtype=np.float64) for axis in hist.axes], meta)


def _check_template(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise WorkspaceError(f"{name}: template has NaN or infinite bins")
    if np.any(values < 0):
        raise WorkspaceError(f"{name}: template has negative bins (min {values.min():.3g})")


def build_workspace(signal_pdf: str | Path, background_pdfs: Sequence[str | Path],
                    mass_GeV: float) -> dict[str, Any]:
    """Combine one mass's signal PDF with the background PDFs into a workspace document.

    Raises WorkspaceError for mismatched binnings, NaN/negative bins, duplicate sources or a
    non-empty signal PDF with zero content; an empty signal (no events in the ROI) is kept and
    flagged ``signal.empty = true`` so that later stages report "no sensitivity".
    """
    sig_values, edges, sig_meta = read_template(signal_pdf)
    _check_template(sig_meta["source"], sig_values)
    empty = bool(sig_meta.get("empty", False))
    if not empty and not sig_values.sum() > 0:
        raise WorkspaceError(f"{signal_pdf}: signal template is all zero but not flagged empty")
    backgrounds = []
    for path in sorted(background_pdfs, key=lambda p: Path(p).stem):
        values, b_edges, meta = read_template(path)
        if any(not np.array_equal(a, b) for a, b in zip(edges, b_edges)):
            raise WorkspaceError(f"{path}: binning differs from the signal PDF {signal_pdf}")
        _check_template(meta["source"], values)
        if "rel_unc" not in meta.get("source_metadata", {}):
            raise WorkspaceError(f"{path}: background PDF without rel_unc in its source metadata")
        rel = float(meta["source_metadata"]["rel_unc"])
        total = float(values.sum())
        backgrounds.append({
            "name": meta["source"],
            "expected_events": total,
            "rel_unc": rel,
            "sigma_events": rel * total,
            "fixed": rel == 0.0,
            "template": values.tolist(),
        })
    names = [b["name"] for b in backgrounds]
    if len(set(names)) != len(names):
        raise WorkspaceError(f"duplicate background sources: {names}")
    if not backgrounds:
        raise WorkspaceError("no background PDFs given")
    return {
        "format": FORMAT,
        "lzflow_version": __version__,
        "mass_GeV": float(mass_GeV),
        "sigma_ref_cm2": float(sig_meta["sigma_ref_cm2"]),
        "detector_hash": sig_meta.get("detector_hash"),
        "axes": [{"name": "cS1", "unit": "phd", "edges": edges[0].tolist()},
                 {"name": "log10cS2", "unit": "log10(phd)", "edges": edges[1].tolist()}],
        "flattening": "C order: cS1 slow, log10cS2 fast (numpy ravel)",
        "signal": {
            "name": sig_meta["source"],
            "expected_events": float(sig_values.sum()),
            "empty": empty,
            "template": sig_values.tolist(),
        },
        "backgrounds": backgrounds,
    }


def asymptotic_summary(model: Any, spec: Mapping[str, Any], sigma_ref_cm2: float) -> dict[str, Any]:
    """Asimov asymptotic limits of a workspace's model for both methods (CLs+b, CLs) and the
    discovery potential at ``spec["discovery_sigma"]``, in μ and in cm² (σ = μ σ_ref).

    ``spec``: ``cl``, ``method`` (the primary one), ``test_statistic``, ``power_threshold`` (0 or
    null: no power constraint, the PCL is the observed limit), ``discovery_sigma``.
    """
    from .config import STATS_DEFAULTS
    from .stats.asymptotic import asymptotic_limits, discovery_potential

    threshold = spec["power_threshold"]
    by_method = {}
    for method, key in (("CLs+b", "clsb"), ("CLs", "cls")):
        # without a power constraint the PCL fields are not used: the solver gets the default threshold
        res = asymptotic_limits(model, cl=spec["cl"], method=key, test_stat=spec["test_statistic"],
                                power_threshold=threshold or STATS_DEFAULTS["power_threshold"])
        by_method[method] = {
            "observed_mu": res.observed,
            "expected_mu": {str(n): v for n, v in res.expected.items()},
            "pcl_mu": res.pcl if threshold else res.observed,
            "pcl_floor_mu": res.pcl_floor if threshold else None,
        }
    primary = by_method[spec["method"]]
    mu_disc = discovery_potential(model, z=spec["discovery_sigma"])
    return {
        "method": spec["method"], "by_method": by_method,
        "expected_sigma_cm2": {n: v * sigma_ref_cm2 for n, v in primary["expected_mu"].items()},
        "pcl_sigma_cm2": primary["pcl_mu"] * sigma_ref_cm2,
        "discovery_sigma": spec["discovery_sigma"],
        "discovery_mu": mu_disc,
        "discovery_sigma_cm2": mu_disc * sigma_ref_cm2 if np.isfinite(mu_disc) else None,
    }


def poi_grid(median_mu: float, grid: Mapping[str, Any]) -> list[float]:
    """The toys' POI grid: ``median_mu × linspace(min_factor, max_factor, n_points)``, with 0 in
    front when ``include_zero`` (the two-sided construction, :mod:`lzflow.construction_stage`)."""
    points = (median_mu * np.linspace(grid["min_factor"], grid["max_factor"], grid["n_points"])).tolist()
    return [0.0, *points] if grid.get("include_zero") else points


def make_workspace(signal_pdf: str | Path, background_pdfs: Sequence[str | Path], spec: Mapping[str, Any],
                   variations: Sequence[str | Path] = ()) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The workspace job: (workspace document with its asymptotic limits and POI grid, exports by
    kind — see :data:`EXPORT_NAMES`). ``spec``: ``mass_GeV``, ``poi_grid`` (``n_points``,
    ``min_factor``, ``max_factor``), the procedure keys of :func:`asymptotic_summary` and, with
    detector systematics, ``systematics`` (their names, in order); ``variations``: the varied
    templates of the affected sources (``pdfs/variations/<source>.json``, :func:`shape_systematics`)."""
    from .impacts import impacts

    ws = build_workspace(signal_pdf, background_pdfs, spec["mass_GeV"])
    if spec.get("systematics"):
        ws["shape_systematics"] = shape_systematics(ws, spec["systematics"], variations)
        ws["shape_interpolation"] = spec["interpolation"]
    if spec.get("mc_stat"):
        add_mc_stat(ws, background_pdfs, spec["mc_stat"]["threshold"])
    if ws["signal"]["empty"]:
        ws["poi_grid"] = []
        ws["asymptotic"] = {"no_sensitivity": True}
        return ws, {kind: {"no_sensitivity": True} for kind in EXPORT_NAMES}
    model = workspace_model(ws)
    if model.shape_systematics and model.interpolation != "code4p":  # MC-empty sample-bins on their sample's ratio
        ws["shape_ratio_floored"] = dict(model.morph.floored)
    ws["asymptotic"] = asymptotic_summary(model, spec, ws["sigma_ref_cm2"])
    ws["poi_grid"] = poi_grid(ws["asymptotic"]["by_method"]["CLs+b"]["expected_mu"]["0"], spec["poi_grid"])
    return ws, {"pyhf": pyhf_export(model), "hs3": hs3_export(ws),
                "impacts": {"mass_GeV": spec["mass_GeV"], **impacts(model, spec, ws["sigma_ref_cm2"])}}


def pyhf_export(model: Any) -> dict[str, Any]:
    """The pyhf workspace of ``model``, or ``{"not_exported": <why>}`` when pyhf cannot express its
    shape morphing (``log_code4p``: pyhf's ``histosys`` interpolations are additive)."""
    from .stats.pyhf_export import to_pyhf_workspace

    if model.shape_systematics and model.interpolation != "code4p":
        return {"not_exported": f"pyhf has no multiplicative histosys interpolation ({model.interpolation}); "
                                f"set systematics.interpolation: code4p for a pyhf export"}
    return to_pyhf_workspace(model)


def hs3_export(ws: Mapping[str, Any]) -> dict[str, Any]:
    """The HS3 document of ``ws`` (multiplicative morphings as per-bin ``generic_function`` factors of a
    ``shapefactor``: :mod:`lzflow.hs3_logmorph`), or ``{"not_exported": <why>}`` with template MC statistics."""
    if ws.get("mc_stat"):
        return {"not_exported": "the HS3 export has no template MC statistics (staterror) yet; "
                                "the pyhf export carries them"}
    return to_hs3(ws)


def write_workspace(path: str | Path, ws: Mapping[str, Any], exports: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``workspace.json`` at ``path`` and its exports beside it (each atomically)."""
    from .io import write_json

    path = Path(path)
    for kind, doc in exports.items():
        write_json(path.with_name(EXPORT_NAMES[kind]), doc)
    write_json(path, ws)


def load_workspace_file(path: str | Path, error: type[Exception] = WorkspaceError) -> tuple[dict[str, Any], str]:
    """A workspace document (``.json`` or gzipped, recognised by its bytes) and the sha256 of the
    file; ``error`` (one line) if the file is missing, not JSON or not an lzflow workspace."""
    import gzip
    import hashlib
    import json

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such workspace file")
    raw = path.read_bytes()
    try:
        ws = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (ValueError, OSError) as err:
        raise error(f"{path}: not a workspace JSON ({' '.join(str(err).split())})") from None
    if not isinstance(ws, dict) or ws.get("format") not in FORMATS:
        raise error(f"{path}: format {ws.get('format') if isinstance(ws, dict) else None!r}; expected {' or '.join(FORMATS)}")
    return ws, hashlib.sha256(raw).hexdigest()


def read_workspace(path: str | Path) -> dict[str, Any]:
    """Read and check a workspace document (format tag, shapes); ``.json`` or gzipped (a combined
    workspace of ``lzflow combine`` may be ``.json.gz``)."""
    import gzip
    import json

    raw = Path(path).read_bytes() if str(path).endswith(".gz") else None
    ws = read_json(path) if raw is None else json.loads(gzip.decompress(raw))
    if not isinstance(ws, dict) or ws.get("format") not in FORMATS:
        raise WorkspaceError(f"{path}: not an lzflow workspace (format {ws.get('format') if isinstance(ws, dict) else None!r})")
    return ws


def workspace_model(ws: Mapping[str, Any]):
    """The :class:`lzflow.stats.model.BinnedModel` of a workspace document (with its
    ``shape_systematics``, :func:`shape_systematic_models`, when it has them)."""
    from .stats.model import BinnedModel

    model = BinnedModel.from_templates(
        signal=np.asarray(ws["signal"]["template"], dtype=np.float64),
        backgrounds=[np.asarray(b["template"], dtype=np.float64) for b in ws["backgrounds"]],
        names=[b["name"] for b in ws["backgrounds"]],
        rel_unc=[b["rel_unc"] for b in ws["backgrounds"]],
        signal_name=ws["signal"]["name"],
    )
    if ws.get("shape_systematics"):
        # workspaces written before the interpolation was a choice were morphed with code 4p
        model = model.with_shape_systematics(shape_systematic_models(ws), ws.get("shape_interpolation", "code4p"))
    if ws.get("mc_stat"):  # with shape systematics too (lzflow.stats.mcstat_morph)
        model = model.with_mc_stat(mc_stat_delta(ws))
    return model


def add_mc_stat(ws: dict[str, Any], background_pdfs: Sequence[str | Path], threshold: float) -> None:
    """Template MC statistics (:mod:`lzflow.stats.mcstat`): each background of ``ws`` gets
    ``mc_rel_error``, the relative MC error sqrt(variance)/value of its template per bin (the fold's
    variance Σ_j p_j² c_jb/N_j², :func:`lzflow.pdfs.fold_spectrum`, read from the PDF's Weight
    storage; 0 in empty bins), ``ws["mc_stat"]`` the threshold and the number of γ bins, and the
    format becomes :data:`FORMAT_MCSTAT`. With shape systematics the γ scale the morphed background
    (:mod:`lzflow.stats.mcstat_morph`); δ_b is that of the nominal templates."""
    from .pdfs import read_pdf

    by_name = {b["name"]: b for b in ws["backgrounds"]}
    for path in background_pdfs:
        hist, meta = read_pdf(Path(path).parent, Path(path).stem)
        values, var = np.asarray(hist.values(), float), np.asarray(hist.variances(), float)
        if not np.array_equal(values, np.asarray(by_name[meta["source"]]["template"], float)):
            raise WorkspaceError(f"{path}: template differs from the workspace's {meta['source']!r}")
        rel = np.where(values > 0, np.sqrt(np.clip(var, 0.0, None)) / np.where(values > 0, values, 1.0), 0.0)
        by_name[meta["source"]]["mc_rel_error"] = rel.tolist()
    missing = [b["name"] for b in ws["backgrounds"] if "mc_rel_error" not in b]
    if missing:
        raise WorkspaceError(f"mc_stat: no PDF given for backgrounds {missing}")
    ws["format"] = FORMAT_MCSTAT
    ws["mc_stat"] = {"threshold": float(threshold)}
    ws["mc_stat"]["gamma_bins"] = int(np.count_nonzero(mc_stat_delta(ws)))


def mc_stat_delta(ws: Mapping[str, Any]) -> np.ndarray:
    """δ_b (flattened, C order) of a workspace with ``mc_stat``: the total background's relative MC
    error, 0 below the threshold (:func:`lzflow.stats.mcstat.total_delta`)."""
    from .stats.mcstat import total_delta

    if any("mc_rel_error" not in b for b in ws["backgrounds"]):
        raise WorkspaceError("workspace has mc_stat but a background without mc_rel_error; expected one per background")
    t = np.stack([np.asarray(b["template"], float).ravel() for b in ws["backgrounds"]])
    r = np.stack([np.asarray(b["mc_rel_error"], float).ravel() for b in ws["backgrounds"]])
    return total_delta(t, r, float(ws["mc_stat"]["threshold"]))


def shape_systematics(ws: Mapping[str, Any], names: Sequence[str], variations: Sequence[str | Path]
                      ) -> list[dict[str, Any]]:
    """``ws["shape_systematics"]`` from the varied templates of the sources (one
    ``pdfs/variations/<source>.json`` per affected source, :func:`lzflow.pdfs.make_variation_pdf`):
    per systematic (in ``names`` order) ``name``, ``parameter`` (``alpha_<name>``), ``physical``
    (key, nominal, σ, unit) and ``templates`` {sample: {"-2", "-1", "1", "2": template}} for the
    samples it acts on (templates 2D like the nominal ones; a sample left out is unaffected)."""
    from .pdfs import VARIATIONS_FORMAT

    samples = {ws["signal"]["name"]: np.asarray(ws["signal"]["template"]).shape,
               **{b["name"]: np.asarray(b["template"]).shape for b in ws["backgrounds"]}}
    out = {name: {"name": name, "parameter": f"alpha_{name}", "physical": None, "templates": {}} for name in names}
    for path in variations:
        doc = read_json(path)
        if doc.get("format") != VARIATIONS_FORMAT or doc.get("source") not in samples:
            raise WorkspaceError(f"{path}: not the varied templates of a sample of this workspace "
                                 f"({', '.join(samples)})")
        for entry in doc["systematics"]:
            if entry["name"] not in out:
                raise WorkspaceError(f"{path}: systematic {entry['name']!r} is not configured ({', '.join(names)})")
            target = out[entry["name"]]
            if target["physical"] not in (None, entry["physical"]):
                raise WorkspaceError(f"{path}: {entry['name']} physical parameter {entry['physical']} differs from "
                                     f"{target['physical']} of another source")
            target["physical"] = entry["physical"]
            shifts = {}
            for label, shift in entry["shifts"].items():
                values = np.asarray(shift["template"], dtype=np.float64)
                if values.shape != samples[doc["source"]]:
                    raise WorkspaceError(f"{path}: {entry['name']} {label} template has shape {values.shape}; "
                                         f"expected {samples[doc['source']]}")
                _check_template(f"{doc['source']} {entry['name']} {label}", values)
                shifts[label] = shift["template"]
            target["templates"][doc["source"]] = shifts
    missing = [name for name, entry in out.items() if entry["physical"] is None]
    if missing:
        raise WorkspaceError(f"systematic {missing[0]}: no varied templates given; expected --variations files")
    return [out[name] for name in names]


def shape_systematic_models(ws: Mapping[str, Any]) -> tuple[Any, ...]:
    """``lzflow.stats.model.ShapeSystematic`` objects of a workspace's ``shape_systematics``: ``up``/``down``
    = the α = ±1 templates of [signal, *backgrounds] (the nominal template for an unaffected sample),
    ``up2``/``down2`` the α = ±2 ones, flattened in C order."""
    try:
        from .stats.model import ShapeSystematic
    except ImportError:
        raise WorkspaceError("this workspace has shape_systematics, but lzflow.stats.model has no ShapeSystematic "
                             "(the statistics side of issue 12); expected an lzflow with shape nuisance parameters"
                             ) from None
    nominal = [ws["signal"], *ws["backgrounds"]]
    out = []
    for entry in ws["shape_systematics"]:
        rows = {label: np.stack([np.asarray(entry["templates"].get(s["name"], {}).get(label, s["template"]),
                                            dtype=np.float64).ravel() for s in nominal]) for label in ("1", "-1", "2", "-2")}
        out.append(ShapeSystematic(entry["name"], up=rows["1"], down=rows["-1"], up2=rows["2"], down2=rows["-2"]))
    return tuple(out)


def _hs3_description(ws: Mapping[str, Any]) -> str:
    return (f"lzflow workspace, WIMP mass {ws['mass_GeV']} GeV, sigma_ref {ws['sigma_ref_cm2']} cm2; "
            "contents flattened in C order (cS1 slow, log10cS2 fast)")


def to_hs3(ws: Mapping[str, Any], observed: np.ndarray | None = None) -> dict[str, Any]:
    """HS3 document of a workspace (:func:`lzflow.hs3.hs3_document`: one ``histfactory_dist`` with
    pyhf's parameter names, domains and a ROOT ModelConfig)."""
    from .hs3 import hs3_document

    if ws.get("runs"):  # lzflow.combinecli: no single (cS1, log10cS2) grid
        raise WorkspaceError(f"a combined workspace (runs {', '.join(r['name'] for r in ws['runs'])}) has no single "
                             f"axis set for HS3; expected a single-run workspace")
    return hs3_document(workspace_model(ws), ws["axes"], _hs3_description(ws), observed)
