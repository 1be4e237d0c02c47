"""Salting: fake signal events hidden in an event list with a sealed seed, removed by an explicit
step (docs/data.md, "Salting"). ``lzflow salt`` and ``lzflow unsalt`` (:func:`register`).

Why: an analysis that unblinds a salted list sees salted results — limits, best fit, discovery
p-values all include the fake signal — and cannot tell which events are fake. Decisions taken after
unblinding (cuts, models, fit choices) can then not be tuned to the real events. Only when the
analysis is frozen is the salt removed (``lzflow unsalt``) and the results recomputed.

Who does what: a salt keeper (not an analyst) runs ``lzflow salt`` on the real list. It writes the
salted list, which the analysis config's ``data.path`` names, and the **salt record** (JSON), which
the keeper keeps away from the analysts. The salt's seed is drawn from the operating system's
entropy (:func:`secrets.randbits`) unless given, and is written only into the record; so are the
mass, the cross section (given, or drawn log-uniformly in a range from the seed, so that the keeper
need not know it either) and the positions of the fake events.

The salt: signal-only events of one workspace's signal template at σ (Poisson counts per bin,
placed uniformly within their bin, :func:`lzflow.simulate.simulate` of the workspace with its
backgrounds set to zero), inserted at positions drawn from the seed; the real events keep their
order. Every event is written by the same writer (:func:`lzflow.eventlist.write_events`), and the
fake values are rounded to the real events' decimal precision (the fewest decimals, at most 12, that
give every real value back; none when the real values need more), so neither format nor precision
tells them apart. The salted file's provenance says ``lzflow salt`` and nothing of the salt.

Revealing: ``lzflow unsalt`` takes the salted list and the record, checks the list's SHA-256
against the record (a record of another list is refused), removes the fake events and checks that
what is left is the real list, event for event (its digest in the record). The unsalted list names
the record's truth (mass, σ, number of fake events) in its provenance; the analysis then points
``data.path`` at it — an explicit config change, recorded like unblinding (the event file and its
SHA-256 in every ``limit.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SALT_FORMAT", "events_digest", "make_salt", "register", "remove_salt", "salt_precision", "salt_status"]

#: the salt record's format
SALT_FORMAT = "lzflow-salt-1"
#: the random stream of the salt's positions and cross section (beside simulate's own streams)
SALT_STREAM = 7
#: the most decimals a rounding to the real events' precision may use
MAX_DECIMALS = 12


def events_digest(cs1: np.ndarray, cs2: np.ndarray) -> str:
    """SHA-256 (16 hex digits) of the events (float64, in order)."""
    raw = np.ascontiguousarray(cs1, np.float64).tobytes() + np.ascontiguousarray(cs2, np.float64).tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def salt_precision(values: np.ndarray) -> int | None:
    """The fewest decimals d ≤ :data:`MAX_DECIMALS` with round(x, d) == x for every value; None if none."""
    values = np.asarray(values, dtype=np.float64)
    for d in range(MAX_DECIMALS + 1):
        if np.array_equal(np.round(values, d), values):
            return d
    return None


def _signal_only(ws: Mapping[str, Any]) -> dict[str, Any]:
    """The workspace with every background template zero and no shape systematics: its
    pseudo-datasets are signal events only, from the nominal signal template."""
    out = json.loads(json.dumps(ws))
    for b in out["backgrounds"]:
        b["template"] = np.zeros_like(np.asarray(b["template"], dtype=np.float64)).tolist()
    out.pop("shape_systematics", None)
    return out


def make_salt(cs1: np.ndarray, cs2: np.ndarray, ws: Mapping[str, Any], sigma_cm2: float | None = None,
              sigma_range: tuple[float, float] | None = None, seed: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The salted events (cS1, cS2) and the salt record's truth (module docstring). Exactly one
    of ``sigma_cm2`` and ``sigma_range`` (log-uniform from the seed); ``seed`` default: 63 bits
    of OS entropy."""
    from .eventlist import DataError
    from .simulate import simulate

    if (sigma_cm2 is None) == (sigma_range is None):
        raise DataError("salt: give exactly one of sigma_cm2 and sigma_range")
    seed = secrets.randbits(63) if seed is None else int(seed)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SALT_STREAM])))
    if sigma_range is not None:
        lo, hi = (float(x) for x in sigma_range)
        if not 0 < lo <= hi:
            raise DataError(f"salt: sigma_range {list(sigma_range)}; expected 0 < low <= high [cm2]")
        sigma_cm2 = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    fake = simulate(_signal_only(ws), float(sigma_cm2), seed)
    n_real, n_salt = int(np.size(cs1)), fake.n_events
    f1, f2 = fake.cs1, fake.cs2
    d1, d2 = salt_precision(cs1), salt_precision(cs2)
    if d1 is not None:
        f1 = np.round(f1, d1)
    if d2 is not None:
        f2 = np.round(f2, d2)
    positions = np.sort(rng.choice(n_real + n_salt, size=n_salt, replace=False))
    is_salt = np.zeros(n_real + n_salt, dtype=bool)
    is_salt[positions] = True
    out1, out2 = np.empty(n_real + n_salt), np.empty(n_real + n_salt)
    out1[is_salt], out2[is_salt] = f1, f2
    out1[~is_salt], out2[~is_salt] = cs1, cs2
    truth = {"seed": seed, "mass_GeV": float(ws["mass_GeV"]), "sigma_cm2": float(sigma_cm2),
             "sigma_range_cm2": None if sigma_range is None else [float(x) for x in sigma_range],
             "mu": fake.mu, "n_salt": n_salt, "n_real": n_real, "positions": positions.tolist(),
             "decimals": {"cS1": d1, "cS2": d2}, "real_events_digest": events_digest(cs1, cs2),
             "signal_name": ws["signal"]["name"]}
    return out1, out2, truth


def remove_salt(cs1: np.ndarray, cs2: np.ndarray, truth: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The real events of a salted list: the record's positions removed, checked against its digest."""
    from .eventlist import DataError

    n = int(truth["n_real"]) + int(truth["n_salt"])
    if np.size(cs1) != n:
        raise DataError(f"unsalt: {np.size(cs1)} events; the salt record expects {n} (n_real + n_salt)")
    keep = np.ones(n, dtype=bool)
    keep[np.asarray(truth["positions"], dtype=np.int64)] = False
    real1, real2 = np.asarray(cs1)[keep], np.asarray(cs2)[keep]
    if events_digest(real1, real2) != truth["real_events_digest"]:
        raise DataError("unsalt: the events left are not the real list the record was made from")
    return real1, real2


def file_provenance(path: str | Path, fmt: str | None = None, tree: str = "events") -> dict[str, Any] | None:
    """The lzflow provenance an event file carries (:func:`lzflow.eventlist.write_events`: CSV the
    ``# lzflow:`` line before the header, Parquet the schema metadata ``lzflow``, ROOT the
    TObjString ``lzflow_provenance``); None when it has none."""
    from .eventlist import event_format

    fmt = event_format(path, fmt)
    text = None
    if fmt == "csv":
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                if line.startswith("# lzflow: "):
                    text = line[len("# lzflow: "):]
                    break
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        text = (pq.read_schema(path).metadata or {}).get(b"lzflow")
    else:
        import uproot

        with uproot.open(path) as handle:
            text = str(handle["lzflow_provenance"]) if "lzflow_provenance" in handle else None
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def salt_status(path: str | Path, fmt: str | None = None, tree: str = "events") -> dict[str, Any]:
    """Whether an event list is salted by ``lzflow salt`` (``salted``) or had its salt removed by
    ``lzflow unsalt`` (``salt_removed``: the salt's mass, σ, number of fake events, seed), from
    its provenance. A list salted elsewhere carries no such mark."""
    prov = file_provenance(path, fmt, tree) or {}
    generator = prov.get("generator")
    return {"salted": generator == "lzflow salt",
            "salt_removed": prov.get("salt") if generator == "lzflow unsalt" else None}


def _read(args: argparse.Namespace, path: str):
    from .eventlist import read_events

    return read_events(path, columns=args.columns or None, units=args.units or None, tree=args.tree, fmt=args.format)


def cmd_salt(args: argparse.Namespace) -> int:
    """hide fake signal events in an event list with a sealed seed (salting; docs/data.md).

    Writes the salted list (--out, any event format) and the salt record (--record: seed, mass,
    cross section, positions of the fake events), which the salt keeper keeps from the analysts.
    """
    from .eventlist import write_events
    from .io import write_json
    from .simulate import load_workspace

    ws, ws_sha = load_workspace(args.workspace)
    events = _read(args, args.events)
    cs1, cs2, truth = make_salt(events.cs1, events.cs2, ws, args.sigma_cm2,
                                tuple(args.sigma_range) if args.sigma_range else None, args.seed)
    write_events(args.out, cs1, cs2, provenance={"generator": "lzflow salt"}, tree=args.tree)
    record = {"format": SALT_FORMAT, "salted_file": str(args.out), "salted_sha256": _sha256(args.out),
              "real_file": str(args.events), "real_sha256": _sha256(args.events), "workspace_sha256": ws_sha,
              "truth": truth}
    write_json(args.record, record)
    print(f"salted {len(events)} events -> {args.out} ({len(cs1)} events); salt record -> {args.record} "
          f"(keep it from the analysts)")
    return 0


def cmd_unsalt(args: argparse.Namespace) -> int:
    """remove the salt from a salted event list (the explicit reveal; docs/data.md).

    Checks the list against the salt record (SHA-256), removes the fake events, checks the rest is
    the real list and writes it (--out) with the salt's truth in its provenance; prints the truth.
    """
    from .eventlist import DataError, write_events
    from .io import read_json

    record = read_json(args.record)
    if record.get("format") != SALT_FORMAT:
        raise DataError(f"{args.record}: format {record.get('format')!r}; expected {SALT_FORMAT!r} (lzflow salt)")
    if _sha256(args.events) != record["salted_sha256"]:
        raise DataError(f"{args.events}: SHA-256 differs from the salt record's salted_sha256; expected the "
                        f"salted list the record was made with")
    events = _read(args, args.events)
    cs1, cs2 = remove_salt(events.cs1, events.cs2, record["truth"])
    t = record["truth"]
    reveal = {k: t[k] for k in ("mass_GeV", "sigma_cm2", "n_salt", "n_real", "seed")}
    write_events(args.out, cs1, cs2, provenance={"generator": "lzflow unsalt", "salt": reveal,
                                                 "salted_sha256": record["salted_sha256"]}, tree=args.tree)
    print(f"salt revealed: {t['n_salt']} fake events of a {t['mass_GeV']:g} GeV signal at {t['sigma_cm2']:.4g} cm2 "
          f"removed; {len(cs1)} real events -> {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``salt`` and ``unsalt`` to the console script's subparsers."""
    from .cliparse import required, stage

    for name, func in (("salt", cmd_salt), ("unsalt", cmd_unsalt)):
        p = stage(sub, name, func)
        if name == "salt":
            required(p, events="the real event list", workspace="workspace.json (.gz) of the salt's mass",
                     out="output salted event list", record="output salt record (JSON; keep it from the analysts)")
            sigma = p.add_mutually_exclusive_group(required=True)
            sigma.add_argument("--sigma-cm2", type=float, help="the salt's cross section [cm2]")
            sigma.add_argument("--sigma-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                               help="draw the cross section log-uniformly in [LOW, HIGH] cm2 from the sealed seed")
            p.add_argument("--seed", type=int, help="the salt's seed (default: 63 bits of OS entropy, in the record only)")
        else:
            required(p, events="the salted event list", record="its salt record (lzflow salt --record)",
                     out="output event list without the salt")
        p.add_argument("--columns", nargs="*", default=[], metavar="Q=NAME", help="column names, e.g. cS1=s1c")
        p.add_argument("--units", nargs="*", default=[], metavar="Q=UNIT", help="units of undeclared columns")
        p.add_argument("--format", choices=["csv", "parquet", "root"], help="input format (default: suffix)")
        p.add_argument("--tree", default="events", help="TTree name (ROOT)")
