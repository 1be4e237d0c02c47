"""Per-job overhead of a toy job: interpreter + imports, and a whole `lzflow toys` process.

A toy job of the default analysis fits 1000 toys in ~0.03 s; the rest of its ~1 s is start-up.
This prints, in one run and side by side:

* the bare interpreter (`python -c pass`) and `import numpy` (the floor any Python job pays);
* the imports a toy job needs (lzflow.cli, toyjobs, workspace, stats.toys);
* the same plus the asymptotic/statistics stack (scipy.stats, scipy.optimize) a toy job used to
  import through lzflow.stats's eager __init__ (what the lazy package saves);
* a whole `lzflow toys` process with 10 toys on a workspace (a real job minus its fitting);

each the minimum and median of --repeat runs (alternating, so drifts hit all alike).

    python benchmarks/bench_startup.py --workspace results/quick/m40/workspace.json [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import numpy": [sys.executable, "-c", "import numpy"],
    "toy-job imports": [sys.executable, "-c", "import lzflow.cli, lzflow.toyjobs, lzflow.workspace, lzflow.stats.toys"],
    "... + scipy.stats/optimize (old eager lzflow.stats)": [
        sys.executable, "-c", "import lzflow.cli, lzflow.toyjobs, lzflow.workspace, lzflow.stats.toys, scipy.stats, "
        "scipy.optimize"],
}


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="a workspace.json to run a 10-toy `lzflow toys` job on")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cases = dict(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        if args.workspace:
            spec = {"hypothesis": "sb", "job_index": 0, "n_jobs": 1, "n_toys": 10, "poi_index": 3, "seed": 1,
                    "test_statistic": "qtilde"}
            cases["lzflow toys (10 toys)"] = ["lzflow", "toys", "--spec", json.dumps(spec), "--workspace",
                                              args.workspace, "--out", str(Path(tmp) / "job0.npz")]
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, cmd in cases.items():
                times[name].append(_time(cmd))
    width = max(map(len, times))
    print(f"{'case':<{width}}  min [s]  median [s]   ({args.repeat} runs each)")
    for name, values in times.items():
        print(f"{name:<{width}}  {min(values):7.3f}  {statistics.median(values):9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
