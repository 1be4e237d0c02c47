"""Shared fixtures: repository paths and small configs."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("CONDOR_CONFIG", "/dev/null")
warnings.filterwarnings("ignore", message="Default WIMP parameters are changed")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def load_profile():
    """Parse ``<directory>/config.yaml`` of a profile the way Snakemake does (YTE-processed YAML),
    with extra environment variables set while it is read. What the profile's definitions do to
    the environment (the cluster profiles set LZFLOW_TOY_JOBS) is undone afterwards."""

    def load(directory: Path, **environ: str) -> dict:
        import yte

        saved = dict(os.environ)
        try:
            os.environ.update(environ)
            with open(Path(directory) / "config.yaml") as fh:
                return yte.process_yaml(fh, require_use_yte=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    return load


@pytest.fixture(scope="session")
def default_config(repo):
    from lzflow.config import load_yaml

    return load_yaml(repo / "config" / "config.yaml")


@pytest.fixture(scope="session")
def projection_detector(repo):
    from lzflow.config import load_yaml
    from lzflow.detector import resolve_detector

    return resolve_detector(load_yaml(repo / "config" / "detector" / "lz_projection.yaml"))


def copy_workflow(repo: Path, destination: Path) -> Path:
    """A second checkout of the workflow (Snakefile, rules, config, profiles and their ./NAME links)
    at ``destination``: runs there keep their .snakemake/ job database and any stray file out of
    the repository."""
    import shutil

    destination.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles"):
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, destination / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, destination / name)
    for link in repo.iterdir():
        if link.is_symlink() and os.readlink(link).startswith("profiles/"):
            (destination / link.name).symlink_to(os.readlink(link))
    return destination

