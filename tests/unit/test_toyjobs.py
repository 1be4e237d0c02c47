"""Unit tests of the toy stage (lzflow.toyjobs): run numbers, job splits, toy files (round trip,
checksum, corruption, quarantine), file identities and the job header."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from lzflow import layout
from lzflow.toyjobs import (MAX_JOBS, MAX_POI, CorruptToyFile, ToyFileError, load_toy_job, quarantine, run_number,
                            run_toy_job, save_toy_job, toy_block, toy_file_identity, workspace_digest,
                            write_no_sensitivity_file)

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def ws40():
    """The default analysis' 40 GeV workspace (real NEST templates), with a short POI grid."""
    ws = json.loads(gzip.decompress((DATA / "workspace_m40.json.gz").read_bytes()))
    ws["poi_grid"] = ws["poi_grid"][:3]
    return ws


def _spec(**kw):
    return {"hypothesis": "sb", "poi_index": 1, "job_index": 0, "n_jobs": 1, "n_toys": 12, "seed": 5,
            "test_statistic": "qtilde", **kw}


def test_run_numbers_are_unique_over_values():
    seen = {run_number(key, h, poi, job) for key, h, poi, job in
            itertools.product((100_000, 400_000, 400_001), (0, 1), (0, 1, 999), (0, 1, 9999))}
    assert len(seen) == 3 * 2 * 3 * 3
    for bad in ((400_000, 2, 0, 0), (400_000, 0, MAX_POI, 0), (400_000, 0, 0, MAX_JOBS), (400_000, 0, -1, 0)):
        with pytest.raises(ValueError, match="out of range"):
            run_number(*bad)


@pytest.mark.parametrize("n_toys,n_jobs", [(10, 3), (2000, 7), (5, 5), (3, 4)])
def test_toy_blocks_partition_the_indices(n_toys, n_jobs):
    blocks = [toy_block(n_toys, n_jobs, j) for j in range(n_jobs)]
    assert np.array_equal(np.concatenate(blocks), np.arange(n_toys))
    assert max(b.size for b in blocks) - min(b.size for b in blocks) <= 1
    with pytest.raises(ValueError):
        toy_block(n_toys, n_jobs, n_jobs)


def test_file_identity_follows_the_layout():
    assert toy_file_identity("r/" + layout.fill(layout.TOYS_SB, mass="40", poi=3, job=1)) == ("sb", 3, 1)
    assert toy_file_identity("r/" + layout.fill(layout.TOYS_B, mass="40", job=2)) == ("b", 0, 2)
    assert toy_file_identity("r/m40/limit.json") is None


def test_job_header_and_records(ws40):
    result, header = run_toy_job(ws40, _spec())
    assert header["run_number"] == run_number(header["mass_key"], 0, 1, 0)
    assert header["poi_value"] == ws40["poi_grid"][1] and header["toy_index_range"] == [0, 12]
    assert header["seed_entropy"] == [5, header["mass_key"], 1, 0]
    assert header["workspace_digest"] == workspace_digest(ws40)
    assert "likelihood" not in header  # binned headers stay as they were
    assert np.array_equal(result.toy_index, np.arange(12))
    assert result.q.shape == (12, 1) and np.all(np.isfinite(result.q)) and np.all(result.q >= 0)
    bonly, bheader = run_toy_job(ws40, _spec(hypothesis="b", n_toys=6))
    assert bheader["poi_index"] == 0 and bheader["poi_value"] == 0.0
    assert bonly.q.shape == (6, 3)  # B-only toys are evaluated on the whole grid


def test_records_do_not_depend_on_the_job_split(ws40):
    whole, _ = run_toy_job(ws40, _spec())
    parts = [run_toy_job(ws40, _spec(n_jobs=3, job_index=j))[0] for j in range(3)]
    for name in whole.PER_TOY:
        joined = np.concatenate([np.asarray(getattr(p, name)) for p in parts])
        assert joined.tobytes() == np.asarray(getattr(whole, name)).tobytes(), name


def test_toy_file_round_trip_and_corruption(ws40, tmp_path):
    result, header = run_toy_job(ws40, _spec(n_toys=4))
    path = tmp_path / "toys" / "poi1" / "job0.npz"
    path.parent.mkdir(parents=True)
    save_toy_job(path, result, header)
    arrays, back = load_toy_job(path)
    assert {k: v for k, v in back.items() if k != "content_sha256"} == header
    for name in result.PER_TOY:
        assert arrays[name].tobytes() == np.asarray(getattr(result, name)).tobytes()
    # stored, not deflated (random doubles barely compress; zlib cost every toy job 0.37 CPU-s)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    # edit one number: the checksum says so
    edited = dict(arrays)
    edited["q"] = arrays["q"] + 1.0
    np.savez(path, header=np.frombuffer(json.dumps(back).encode(), dtype=np.uint8), **edited)
    with pytest.raises(CorruptToyFile, match="checksum mismatch"):
        load_toy_job(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(CorruptToyFile, match="not a readable .npz"):
        load_toy_job(path)
    moved = quarantine(path)
    assert moved.name == "job0.npz.corrupt" and not path.exists()
    path.write_bytes(b"again")
    assert quarantine(path).name == "job0.npz.corrupt.1"
    with pytest.raises(ToyFileError, match="missing"):
        load_toy_job(path)


def test_no_sensitivity_file(tmp_path):
    path = tmp_path / "job0.npz"
    write_no_sensitivity_file(path)
    with np.load(path) as data:
        assert data.files == ["no_sensitivity"] and bool(data["no_sensitivity"])


def test_a_toy_job_does_not_import_the_asymptotic_or_plotting_stack():
    """Start-up is most of a toy job (issue 16): ``lzflow toys`` needs numpy and scipy.special, not
    scipy.stats/optimize (asymptotics, ~1 s), matplotlib or uproot (iminuit, the fallback fitter, costs 6 ms)."""
    import subprocess
    import sys

    code = ("import sys; from lzflow.cli import build_parser; from lzflow.toyjobs import run_toy_job, save_toy_job; "
            "from lzflow.workspace import read_workspace, workspace_model; from lzflow.stats.toys import run_toys; "
            "from lzflow.stats.request import ToyRequest; "
            "print(' '.join(m for m in ('scipy.stats', 'scipy.optimize', 'matplotlib', 'uproot', 'numba') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_a_rate_only_toy_job_runs_without_numba():
    """The rate-only fits (the default analysis) take numpy's Newton directions, bit for bit the
    compiled ones (tests/unit/test_linalg_kernels.py), so a toy or merge job does not pay for
    importing numba and loading its kernels (0.3–0.6 CPU-s each; issue 16)."""
    import subprocess
    import sys

    ws = Path(__file__).resolve().parents[1] / "data" / "workspace_quick_m40.json.gz"
    code = ("import gzip, json, sys; from lzflow.toyjobs import run_toy_job; "
            f"ws = json.loads(gzip.open({str(ws)!r}).read()); "
            "spec = {'hypothesis': 'sb', 'poi_index': 3, 'job_index': 0, 'n_jobs': 1, 'n_toys': 300, 'seed': 5, "
            "'test_statistic': 'qtilde'}; r, h = run_toy_job(ws, spec); "
            "print(int(r.q.size), int(sum(r.status_uncond == 0)), 'numba' in sys.modules)")
    n, converged, numba_loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                check=True).stdout.split()
    assert (n, numba_loaded) == ("300", "False") and int(converged) == 300


def test_toy_files_of_a_model_with_shape_systematics_keep_alpha_cond(tmp_path):
    """With K shape parameters the conditional α̂̂ (n, n_mu, K) is written, checksummed and read back;
    without, the file has exactly the rate-only arrays."""
    from lzflow.stats.toyresult import ToyResult

    def records(n_shape: int) -> ToyResult:
        r = ToyResult.empty("sb", 3, 1, 400000, "qtilde", np.zeros(4 + n_shape), np.array([0.1, 0.2]),
                            np.arange(5), n_bkg=3, n_shape=n_shape)
        r.alpha_cond[...] = np.arange(r.alpha_cond.size).reshape(r.alpha_cond.shape)
        return r

    for n_shape in (0, 2):
        path = tmp_path / f"k{n_shape}.npz"
        save_toy_job(path, records(n_shape), {"hypothesis": "sb"})
        arrays, _ = load_toy_job(path)
        assert ("alpha_cond" in arrays) == (n_shape > 0)
        if n_shape:
            assert arrays["alpha_cond"].shape == (5, 2, 2) and arrays["alpha_cond"][4, 1, 1] == 19
