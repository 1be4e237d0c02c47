"""Compare two results trees of lzflow bit for bit: did a code change alter any number?

Usage::

    python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR

``BEFORE_DIR``/``AFTER_DIR`` are results trees of one tag (e.g. ``results/quick``) made by two
versions of lzflow from the same config. Every artefact that carries numbers is compared exactly:

- ``*.npz`` (toy records, response matrices): the same array names, dtypes, shapes and bytes;
- ``*.json`` (limits, workspaces, PDF metadata, fit-error summaries, HS3/pyhf exports): equal
  after parsing (floats compared exactly; ``NaN`` equal to ``NaN``);
- ``*.csv``, ``*.md``: the same bytes, except the run-time columns of the study tables
  (``toy_jobs_wall_s``, ``toy_jobs_cpu_s`` and the Markdown's last column, from Snakemake's
  benchmark files: measured times, not results);
- ``*.root`` (PDF histograms): the same histogram names, edges and contents, read with uproot (ROOT
  files carry creation times and UUIDs, so their bytes differ between any two writes).

Figures (``*.png``), the HTML report and the lock file are not compared (they embed times).
Prints one line per file class with counts, then every difference; exits 1 on any difference or
on a file present on one side only.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

SKIPPED_SUFFIXES = {".png", ".html", ".lock"}
#: columns of a study table (lzflow.study_table) that hold measured run times
TIMING_COLUMNS = ("toy_jobs_wall_s", "toy_jobs_cpu_s")


def _same_json(a: Any, b: Any) -> bool:
    """Exact equality of parsed JSON, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    return a == b


def _npz_difference(a: Path, b: Path) -> str | None:
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        if sorted(za.files) != sorted(zb.files):
            return f"array names differ: {sorted(set(za.files) ^ set(zb.files))}"
        for name in za.files:
            x, y = za[name], zb[name]
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return f"array {name!r} differs"
    return None


def _root_difference(a: Path, b: Path) -> str | None:
    import uproot

    with uproot.open(a) as fa, uproot.open(b) as fb:
        keys_a, keys_b = sorted(fa.keys(cycle=False)), sorted(fb.keys(cycle=False))
        if keys_a != keys_b:
            return f"objects differ: {sorted(set(keys_a) ^ set(keys_b))}"
        for key in keys_a:
            ha, hb = fa[key], fb[key]
            if not hasattr(ha, "values"):
                continue
            if ha.values(flow=True).tobytes() != hb.values(flow=True).tobytes():
                return f"histogram {key!r}: contents differ"
            for axis in range(ha.values().ndim):
                if ha.axis(axis).edges().tobytes() != hb.axis(axis).edges().tobytes():
                    return f"histogram {key!r}: edges of axis {axis} differ"
    return None


def _study_table_text(path: Path) -> str:
    """A study table without its run-time columns (CSV: by name; Markdown: the last column)."""
    text = path.read_text()
    if path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        return json.dumps([{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows])
    return "\n".join(line.rsplit("|", 2)[0] if line.startswith("|") else line for line in text.splitlines())


def file_difference(a: Path, b: Path) -> str | None:
    """None where the two files carry the same numbers; else what differs."""
    suffix = a.suffix
    if suffix == ".npz":
        return _npz_difference(a, b)
    if suffix == ".json":
        return None if _same_json(json.loads(a.read_text()), json.loads(b.read_text())) else "JSON differs"
    if suffix == ".root":
        return _root_difference(a, b)
    if "studies" in a.parts and a.name in ("table.csv", "table.md"):
        return None if _study_table_text(a) == _study_table_text(b) else "table differs (run times not compared)"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def compare_trees(before: Path, after: Path) -> tuple[Counter, list[str]]:
    """Counts of identical files per suffix, and one line per difference."""
    names_a = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    names_b = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    problems = [f"only in {before}: {p}" for p in sorted(names_a - names_b)
                if p.suffix not in SKIPPED_SUFFIXES]
    problems += [f"only in {after}: {p}" for p in sorted(names_b - names_a)
                 if p.suffix not in SKIPPED_SUFFIXES]
    same: Counter = Counter()
    for rel in sorted(names_a & names_b):
        if rel.suffix in SKIPPED_SUFFIXES:
            continue
        diff = file_difference(before / rel, after / rel)
        if diff is None:
            same[rel.suffix] += 1
        else:
            problems.append(f"{rel}: {diff}")
    return same, problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR", file=sys.stderr)
        return 2
    before, after = Path(argv[0]), Path(argv[1])
    same, problems = compare_trees(before, after)
    for suffix, count in sorted(same.items()):
        print(f"identical {suffix:6s} {count:5d}")
    for line in problems:
        print(f"DIFFERENT {line}")
    print(f"{sum(same.values())} files identical, {len(problems)} differences ({before} vs {after})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
