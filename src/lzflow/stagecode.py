"""Code hashes per stage: which of lzflow's source files each stage's outputs depend on.

Snakemake tracks a rule's command, params, inputs and mtimes, but not the Python package the
command imports. Each rule carries ``code=stage_code_hash("<stage>")`` in its params
(:mod:`lzflow.layout`, section 3), a SHA-256 over the source files of the modules that stage depends
on (:data:`STAGE_MODULES`): editing one of them reruns exactly the jobs of the affected stages.

Its own module, imported only where hashes are needed (the Snakefile, ``lzflow provenance``): reading
the spectra modules' imports (:func:`spectra_imports`, with :mod:`ast`) took every job that imports
:mod:`lzflow.layout` ≈ 30 ms (issue 16).
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["PACKAGE_DIR", "RESPONSE_SPECTRA", "STAGE_MODULES", "spectra_imports", "stage_code_hash"]

#: the package directory whose sources are hashed
PACKAGE_DIR = Path(__file__).resolve().parent


def spectra_imports(roots: tuple[str, ...]) -> tuple[str, ...]:
    """The ``spectra/`` modules ``roots`` (module names in ``spectra/``) import, themselves included,
    following relative imports inside ``spectra/`` (read with :mod:`ast`, nothing is imported)."""
    todo, seen = list(roots), set()
    while todo:
        name = todo.pop()
        path = PACKAGE_DIR / "spectra" / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                todo.append(node.module.split(".")[0])
    return tuple(sorted(f"spectra/{name}.py" for name in seen))


#: The spectra modules a response matrix depends on: what :mod:`lzflow.response.reference` reads
#: (the registered backgrounds' shapes and the constants) and what those import; not the signal
#: spectra (``spectra/wimp.py``, ``spectra/spin_dependent.py``) nor the package's re-exports.
RESPONSE_SPECTRA = spectra_imports(("backgrounds", "constants"))

#: Source files (relative to the package, globs allowed) each stage's output depends on.
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "detector": ("detector.py", "units.py"),
    # the allocation is sized for the reference family (response/reference.py): its own frozen WIMP-like
    # shapes and the registered backgrounds' shapes, i.e. spectra/backgrounds.py and what it imports;
    # the signal spectra (spectra/wimp.py, spectra/spin_dependent.py) never shape a response matrix
    "response": ("response/*.py", "space.py", "detector.py", *RESPONSE_SPECTRA),
    "pdf": ("pdfs.py", "roothist.py", "response/*.py", "space.py", "sources.py", "spectra/*.py"),
    "workspace": ("workspace.py", "pdfs.py", "impacts.py", "stats/*.py"),
    "toys": ("toyjobs.py", "toybatch.py", "workspace.py", "observeddata.py", "stats/*.py"),
    "merge": ("merge.py", "observed.py", "observeddata.py", "toyjobs.py", "workspace.py", "fit_errors.py",
              "construction_stage.py", "precision.py", "stats/*.py"),
    "data": ("observeddata.py", "dataconfig.py", "eventlist.py", "space.py", "salt.py"),  # salt: the list's salt status
    "global": ("globalcli.py", "salt.py", "observeddata.py", "toyjobs.py", "workspace.py", "stats/*.py"),
    "gof": ("gofstage.py", "combinecli.py", "observeddata.py", "workspace.py", "stats/*.py"),
    "curve": ("curve.py", "construction_stage.py", "references.py", "reference_data.py", "data/references/*.csv"),
    "mass_plots": ("curve.py", "massplots.py"),
    "errors": ("fit_errors.py", "toyjobs.py"),
    "studies": ("study_table.py", "curve.py", "construction_stage.py"),
    "report": ("report.py", "construction_report.py", "globalcli.py", "gofstage.py", "templates/*"),
    # the rule runs the LZ-like mode (workspaces): the spectra (ideal mode only) do not enter its numbers
    # the combined workspace of a runs analysis (lzflow.runsjob) and its impacts
    "combine": ("runsjob.py", "combinecli.py", "workspace.py", "impacts.py", "stats/*.py"),
    "fog": ("fog.py", "fogcli.py", "workspace.py", "stats/*.py", "data/references/fog/*.csv"),
}


@lru_cache(maxsize=None)
def stage_code_hash(stage: str) -> str:
    """SHA-256 (first 16 hex digits) of the sorted source files a stage depends on."""
    digest = hashlib.sha256()
    for pattern in STAGE_MODULES[stage]:
        for path in sorted(PACKAGE_DIR.glob(pattern)):
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
