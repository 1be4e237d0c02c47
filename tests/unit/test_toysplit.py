"""The toy split (lzflow.toysplit, lzflow.toybatch): which workflow job writes which toy files is
chosen per run, and a batch job writes exactly the files the per-file jobs write."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lzflow import layout as L
from lzflow.config import load_config_file
from lzflow.exceptions import ConfigError
from lzflow.toybatch import main as batch_main
from lzflow.toybatch import pack_specs, run_batch, unpack_specs
from lzflow.toyjobs import load_toy_job, run_toy_job, save_toy_job
from lzflow.toysplit import TOY_JOBS_ENV, owned_toy_files, toy_batches, toy_job_split
from lzflow.variants import expand_studies

DATA = Path(__file__).resolve().parents[1] / "data"


# ------------------------------------------------------------------------------------ the choice
def test_split_from_the_environment():
    assert toy_job_split({}) == "mass"
    assert toy_job_split({TOY_JOBS_ENV: ""}) == "mass"
    assert toy_job_split({TOY_JOBS_ENV: "file"}) == "file"
    assert toy_job_split({TOY_JOBS_ENV: "mass"}) == "mass"
    for bad in ("File", "poi", " mass", "1"):
        with pytest.raises(ConfigError) as err:
            toy_job_split({TOY_JOBS_ENV: bad})
        message = str(err.value)
        assert message.startswith(f"LZFLOW_TOY_JOBS: {bad!r}; expected 'mass'") and "'file'" in message
        assert "\n" not in message


# ------------------------------------------------------------------------------------ the batches
@pytest.fixture(scope="module")
def trees(repo):
    """The quick config with two studies: g1 (new workspaces: every toy file its own) and
    toys_per_poi (new S+B files only: the B-only files stay the baseline's)."""
    raw = load_config_file(repo / "config" / "quick.yaml")
    raw["studies"] = {
        "g1": {"parameter": "detector_overrides.nest.g1", "values": [0.1], "masses_GeV": [40]},
        "toys": {"parameter": "stats.toys_per_poi", "values": [200, 300]},  # 300 = the baseline's
    }
    baseline, studies = expand_studies(raw, repo)
    return [baseline] + [v for s in studies for v in s.variants]


def test_batches_make_every_toy_file_once(trees):
    batches = toy_batches(trees, "R", "LG", "BM")
    made = [out for b in batches for out in b.outputs]
    assert len(made) == len(set(made))
    wanted = {v.path("R", name) for v in trees for label in v.mass_labels for name in L.toy_file_names(v.config, label)}
    assert set(made) == wanted
    names = [b.rule for b in batches]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) for n in names)
    by_rule = {b.rule: b for b in batches}
    assert set(by_rule) == {"toys_m10", "toys_m40", "toys_m40_g1_0p1", "toys_m10_toys_200", "toys_m40_toys_200"}
    # the baseline's batch: every toy file of the mass, S+B per POI x job then B-only
    base = by_rule["toys_m40"]
    assert [Path(o).relative_to("R").as_posix() for o in base.outputs] == L.toy_file_names(trees[0].config, "40")
    assert base.workspace == "R/m40/workspace.json"
    assert base.log == "LG/" + L.fill(L.LOGS["toys_batch"], mass="40")
    assert base.benchmark == "BM/" + L.fill(L.BENCHMARKS["toys_batch"], mass="40")
    assert [s for s in base.specs] == [spec for _, _, spec in L.toy_jobs(trees[0].config, "40")]
    # g1 = 0.1: its own workspace and all its toy files
    g1 = by_rule["toys_m40_g1_0p1"]
    assert g1.workspace == "R/studies/g1/0.1/m40/workspace.json" and len(g1.outputs) == len(base.outputs)
    # 200 toys per POI: the baseline's workspace and B-only files, its own S+B files
    fewer = by_rule["toys_m40_toys_200"]
    assert fewer.workspace == "R/m40/workspace.json"
    assert all("/toys/poi" in o and o.startswith("R/studies/toys/200/") for o in fewer.outputs)
    assert len(fewer.outputs) == len(base.outputs) - 2  # 8 POIs x 2 jobs; 2 B-only files reused
    assert all(s["n_toys"] == 200 for s in fewer.specs)
    # 300 toys per POI is the baseline: nothing of its own
    same = next(v for v in trees if v.study == "toys" and v.label == "300")
    assert owned_toy_files(same, "40") == []


def test_shape_systematics_make_one_batch_per_job_index(repo):
    """With shape systematics a mass's toy files are one job per job index (each ~half the CPU),
    every file still in exactly one batch and in layout order; without them nothing changes."""
    raw = load_config_file(repo / "config" / "quick.yaml")
    raw["systematics"] = load_config_file(repo / "config" / "overlays" / "systematics.yaml")["systematics"]
    raw["studies"] = {"toys": {"parameter": "stats.toys_per_poi", "values": [200]}}
    baseline, studies = expand_studies(raw, repo)
    trees = [baseline] + [v for s in studies for v in s.variants]
    batches = toy_batches(trees, "R", "LG", "BM")
    by_rule = {b.rule: b for b in batches}
    n_jobs = baseline.config["stats"]["per_mass"]["40"]["jobs_per_poi"]
    assert n_jobs == 2
    assert {r for r in by_rule if r.startswith("toys_m40")} == {
        "toys_m40_job0", "toys_m40_job1", "toys_m40_toys_200_job0", "toys_m40_toys_200_job1"}
    made = [out for b in batches for out in b.outputs]
    assert len(made) == len(set(made))
    assert set(made) == {v.path("R", n) for v in trees for m in v.mass_labels for n in L.toy_file_names(v.config, m)}
    names = L.toy_file_names(baseline.config, "40")
    for j in range(n_jobs):
        part = by_rule[f"toys_m40_job{j}"]
        assert all(s["job_index"] == j for s in part.specs)
        assert {s["hypothesis"] for s in part.specs} == {"sb", "b"}  # every POI's S+B file and the B-only one
        rel = [Path(o).relative_to("R").as_posix() for o in part.outputs]
        assert rel == [n for n in names if n in rel]  # layout order kept
        assert part.log == "LG/" + L.fill(L.LOGS["toys_batch_part"], mass="40", job=j)
        assert part.benchmark == "BM/" + L.fill(L.BENCHMARKS["toys_batch_part"], mass="40", job=j)
    assert sum(s["n_toys"] for s in by_rule["toys_m40_job0"].specs) == sum(s["n_toys"] for s in by_rule["toys_m40_job1"].specs)
    # the study reuses the baseline's B-only files: its parts hold its own S+B files only
    assert all(s["hypothesis"] == "sb" for s in by_rule["toys_m40_toys_200_job1"].specs)
    # the same trees without systematics: one batch per tree and mass, as before
    del raw["systematics"]
    plain = expand_studies(raw, repo)
    plain_batches = toy_batches([plain[0]] + [v for s in plain[1] for v in s.variants], "R", "LG", "BM")
    assert {b.rule for b in plain_batches if b.mass == "40"} == {"toys_m40", "toys_m40_toys_200"}


def test_packed_specs_round_trip(trees):
    specs = [spec for _, _, spec in L.toy_jobs(trees[0].config, "40")]
    packed = pack_specs(specs)
    assert unpack_specs(json.loads(L.as_spec(packed))) == specs
    assert set(packed["common"]) >= {"seed", "test_statistic", "n_jobs"}
    assert len(L.as_spec(packed)) < 0.25 * len(L.as_spec(specs))
    assert unpack_specs(pack_specs(specs[:1])) == specs[:1]  # a batch of one: everything common
    with pytest.raises(ValueError, match="expected \\['columns', 'common'\\]"):
        unpack_specs({"jobs": []})
    with pytest.raises(ValueError, match="one length"):
        unpack_specs({"common": {}, "columns": {"a": [1], "b": [1, 2]}})
    with pytest.raises(ValueError):
        pack_specs([])


# ------------------------------------------------------------------------------------ the runner
@pytest.fixture(scope="module")
def ws40():
    """The default analysis' 40 GeV workspace (real NEST templates), with a short POI grid."""
    ws = json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))
    ws["poi_grid"] = ws["poi_grid"][:3]
    return ws


def _specs():
    base = {"n_jobs": 2, "seed": 5, "test_statistic": "qtilde"}
    return [dict(base, hypothesis="sb", poi_index=k, job_index=j, n_toys=10) for k in range(3) for j in range(2)] + \
        [dict(base, hypothesis="b", job_index=j, n_toys=8) for j in range(2)]


def _outs(root: Path, specs) -> list[str]:
    return [str(root / (L.fill(L.TOYS_SB, mass="40", poi=s["poi_index"], job=s["job_index"])
                        if s["hypothesis"] == "sb" else L.fill(L.TOYS_B, mass="40", job=s["job_index"])))
            for s in specs]


def test_a_batch_writes_the_files_of_the_single_jobs(ws40, tmp_path):
    specs = _specs()
    batch_outs, single_outs = _outs(tmp_path / "batch", specs), _outs(tmp_path / "single", specs)
    for out in batch_outs + single_outs:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    headers = run_batch(ws40, specs, batch_outs)
    assert len({h["run_number"] for h in headers}) == len(specs)  # one file per job, each its own run number
    for spec, out in zip(specs, single_outs):
        save_toy_job(out, *run_toy_job(ws40, spec))
    for a, b in zip(batch_outs, single_outs):
        arrays_a, header_a = load_toy_job(a)
        arrays_b, header_b = load_toy_job(b)
        assert header_a == header_b  # run number, seeds, toy indices, checksum of every array
        assert arrays_a.keys() == arrays_b.keys()
        assert all(arrays_a[k].tobytes() == arrays_b[k].tobytes() for k in arrays_a)


def test_a_batch_refuses_mismatched_outputs(ws40, tmp_path):
    specs = _specs()[:2]
    outs = _outs(tmp_path, specs)
    with pytest.raises(ValueError, match="not the file of job \\('sb', 0, 0\\)"):
        run_batch(ws40, specs, outs[::-1])
    with pytest.raises(ValueError, match="2 job specs for 1 outputs"):
        run_batch(ws40, specs, outs[:1])


def test_empty_signal_writes_no_sensitivity_files(ws40, tmp_path):
    ws = dict(ws40, signal=dict(ws40["signal"], empty=True))
    specs = _specs()[:3]
    outs = _outs(tmp_path, specs)
    for out in outs:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    assert run_batch(ws, specs, outs) == []
    for out in outs:
        with np.load(out) as data:
            assert data.files == ["no_sensitivity"] and bool(data["no_sensitivity"])


def test_module_entry_point_user_error_is_one_line(tmp_path):
    bad = tmp_path / "ws.json"
    bad.write_text('{"format": "something else"}')
    out = tmp_path / "m40" / "toys" / "poi0" / "job0.npz"
    spec = L.as_spec(pack_specs(_specs()[:1]))
    result = subprocess.run([sys.executable, "-m", "lzflow.toybatch", "--spec", spec, "--workspace", str(bad),
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("lzflow: error: ") and "not an lzflow workspace" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    assert batch_main(["--spec", spec, "--workspace", str(bad), "--out", str(out)]) == 2


def test_workflow_gate_exits_with_one_line(capsys):
    from lzflow.workflow_gate import toy_split_or_exit

    assert toy_split_or_exit({"LZFLOW_TOY_JOBS": "file"}) == "file"
    with pytest.raises(SystemExit) as stop:
        toy_split_or_exit({"LZFLOW_TOY_JOBS": "cluster"})
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lzflow: config error: LZFLOW_TOY_JOBS: 'cluster'; expected") and err.count("\n") == 1
