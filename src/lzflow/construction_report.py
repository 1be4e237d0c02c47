"""The report's paragraph on the limit construction and the discovery potential from toys
(:mod:`lzflow.construction_stage`): per mass, the two-sided headline next to the one-sided limit on
the same toys, and the toy 3σ/5σ discovery potentials next to the asymptotic ones, with the masses
where they differ beyond their errors (few events: the discreteness of q₀ and its non-χ² tail)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["construction_context", "DIFFERENCE_SIGMAS"]

#: toy and asymptotic potentials "differ" when further apart than this many toy errors (and 5 %)
DIFFERENCE_SIGMAS = 2.0


def _pm(value: float | None, err: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" + (f" ± {err:.2g}" if err is not None else "")


def _two_sided_rows(limits: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for doc in limits:
        ts = doc.get("two_sided")
        if ts is None:
            continue
        one = doc["limits"][doc["method"]]["expected_sigma_cm2"]["0"]
        two = ts["expected_sigma_cm2"]["0"]
        frac, ci = ts.get("mu_lo_positive_fraction"), ts.get("mu_lo_positive_interval") or [None, None]
        dataset = ts.get("observed") or ts.get("asimov") or {}
        rows.append([f"{doc['mass_GeV']:g}", two, one, f"×{two / one:.3f}" if one and two else "–",
                     dataset.get("limit_sigma_cm2"),
                     "–" if frac is None else f"{frac:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]",
                     f"[{_pm(dataset.get('sigma_lo_cm2'), None)}, {_pm(dataset.get('sigma_up_cm2'), None)}]"])
    return rows


def _discovery_rows(limits: Sequence[Mapping[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    rows, differ = [], []
    for doc in limits:
        disc = doc.get("discovery")
        if disc is None:
            continue
        row: list[Any] = [f"{doc['mass_GeV']:g}"]
        for z in ("3", "5"):
            p = disc["potentials"][z]
            toys, err, asym = p["sigma_cm2_toys"], p["sigma_cm2_toys_err"], p["sigma_cm2_asymptotic"]
            ratio = toys / asym if toys and asym else None
            row += [_pm(toys, err), asym, "–" if ratio is None else f"×{ratio:.3f}", f"{p['tail_rel_err']:.3f}"]
            if ratio is not None and err and abs(toys - asym) > max(DIFFERENCE_SIGMAS * err, 0.05 * asym):
                differ.append(f"{doc['mass_GeV']:g} GeV ({z}σ: toys {100 * (ratio - 1):+.0f} %)")
        rows.append(row)
    return rows, differ


def construction_context(limits: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """{"two_sided": rows or [], "discovery": rows or [], "differ": ["<mass> GeV (3σ: toys +x %)"],
    "n_bonly", "n_sb", "method"} over the limit documents (sorted by mass), or None when no document
    has a two-sided section or a toy discovery potential (the report is then as before)."""
    docs = sorted((d for d in limits if not d.get("no_sensitivity")), key=lambda d: d["mass_GeV"])
    two, (disc, differ) = _two_sided_rows(docs), _discovery_rows(docs)
    if not two and not disc:
        return None
    first = next((d["discovery"] for d in docs if "discovery" in d), {})
    return {"two_sided": two, "discovery": disc, "differ": differ, "n_bonly": first.get("n_bonly"),
            "n_sb": first.get("n_sb"), "method": first.get("method"),
            "dataset": "the data" if any("observed" in d.get("two_sided", {}) for d in docs)
            else "the Asimov background-only dataset"}
