"""Provenance: code hashes per stage, so that a change to lzflow's code reruns that stage.

Snakemake tracks a rule's shell command, params, inputs and mtimes, but not the Python package the
command imports. Each rule therefore carries ``code=stage_code_hash("<stage>")`` in its params: a
SHA-256 over the source files of the modules that stage depends on. Editing one of them changes
the params and Snakemake reruns exactly the jobs of the affected stages.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["STAGE_MODULES", "stage_code_hash"]

_PACKAGE = Path(__file__).resolve().parent

#: Source files (relative to the package, globs allowed) each stage's output depends on.
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "detector": ("detector.py", "units.py"),
    "response": ("response.py", "detector.py", "spectra/*.py"),  # spectra shape the allocation
    "pdf": ("pdfs.py", "response.py", "sources.py", "spectra/*.py"),
    "workspace": ("workspace.py", "stats/*.py"),
    "toys": ("toyjobs.py", "workspace.py", "stats/*.py"),
    "merge": ("merge.py", "toyjobs.py", "workspace.py", "stats/*.py"),
    "curve": ("curve.py",),
    "errors": ("fit_errors.py", "toyjobs.py"),
    "studies": ("studies.py", "jobspecs.py", "curve.py"),
    "report": ("report.py",),
}


@lru_cache(maxsize=None)
def stage_code_hash(stage: str) -> str:
    """SHA-256 (first 16 hex digits) of the sorted source files a stage depends on."""
    digest = hashlib.sha256()
    for pattern in STAGE_MODULES[stage]:
        for path in sorted(_PACKAGE.glob(pattern)):
            digest.update(path.relative_to(_PACKAGE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
