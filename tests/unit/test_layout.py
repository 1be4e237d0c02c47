"""Editing a stage's source changes that stage's code hash (and so reruns it), nothing else's."""

from __future__ import annotations

import shutil
from pathlib import Path

import lzflow
from lzflow import layout, stagecode


def test_code_hash_follows_the_stage_sources(tmp_path, monkeypatch):
    package = tmp_path / "lzflow"
    shutil.copytree(Path(lzflow.__file__).parent, package)
    monkeypatch.setattr(stagecode, "PACKAGE_DIR", package)
    stagecode.stage_code_hash.cache_clear()
    before = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
    (package / "merge.py").write_text((package / "merge.py").read_text() + "\n# edited\n")
    stagecode.stage_code_hash.cache_clear()
    after = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
    stagecode.stage_code_hash.cache_clear()
    changed = {stage for stage in before if before[stage] != after[stage]}
    assert changed == {"merge"}
    (package / "stats" / "fit.py").write_text((package / "stats" / "fit.py").read_text() + "\n# edited\n")
    again = {stage: stagecode.stage_code_hash(stage) for stage in stagecode.STAGE_MODULES}
    stagecode.stage_code_hash.cache_clear()
    assert {stage for stage in after if after[stage] != again[stage]} == {"workspace", "toys", "merge", "fog", "global", "gof",
                                                                           "combine"}


def test_every_stage_module_exists():
    package = Path(lzflow.__file__).parent
    for stage, patterns in stagecode.STAGE_MODULES.items():
        for pattern in patterns:
            assert list(package.glob(pattern)), f"{stage}: {pattern} matches no file"


def test_jobs_importing_the_layout_do_not_read_the_sources():
    """Every job imports lzflow.layout (paths, specs); the code hashes (which parse the spectra
    modules' imports with ast) load only where they are used, and the layout serves them lazily."""
    import subprocess
    import sys

    code = ("import sys; import lzflow.layout as L; a = 'lzflow.stagecode' in sys.modules; "
            "h = L.stage_code_hash('toys'); print(a, 'lzflow.stagecode' in sys.modules, h == __import__("
            "'lzflow.stagecode').stagecode.stage_code_hash('toys'))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["False", "True", "True"]
    assert layout.STAGE_MODULES is stagecode.STAGE_MODULES
