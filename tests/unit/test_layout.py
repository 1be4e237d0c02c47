"""Editing a stage's source changes that stage's code hash (and so reruns it), nothing else's."""

from __future__ import annotations

import shutil
from pathlib import Path

import lzflow
from lzflow import layout


def test_code_hash_follows_the_stage_sources(tmp_path, monkeypatch):
    package = tmp_path / "lzflow"
    shutil.copytree(Path(lzflow.__file__).parent, package)
    monkeypatch.setattr(layout, "PACKAGE_DIR", package)
    layout.stage_code_hash.cache_clear()
    before = {stage: layout.stage_code_hash(stage) for stage in layout.STAGE_MODULES}
    (package / "merge.py").write_text((package / "merge.py").read_text() + "\n# edited\n")
    layout.stage_code_hash.cache_clear()
    after = {stage: layout.stage_code_hash(stage) for stage in layout.STAGE_MODULES}
    layout.stage_code_hash.cache_clear()
    changed = {stage for stage in before if before[stage] != after[stage]}
    assert changed == {"merge"}
    (package / "stats" / "fit.py").write_text((package / "stats" / "fit.py").read_text() + "\n# edited\n")
    again = {stage: layout.stage_code_hash(stage) for stage in layout.STAGE_MODULES}
    layout.stage_code_hash.cache_clear()
    assert {stage for stage in after if after[stage] != again[stage]} == {"workspace", "toys", "merge", "fog", "global", "gof",
                                                                           "combine"}


def test_every_stage_module_exists():
    package = Path(lzflow.__file__).parent
    for stage, patterns in layout.STAGE_MODULES.items():
        for pattern in patterns:
            assert list(package.glob(pattern)), f"{stage}: {pattern} matches no file"
