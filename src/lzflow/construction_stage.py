"""The workflow's limit construction (``stats.construction``) and discovery from toys
(``stats.discovery_from_toys``): config checks, what the specs carry, and merge's sections of
``limit.json``.

Construction
------------
``one_sided`` (the default, recorded in the resolved config): the q̃_μ / CLs+b (or CLs) inversion
of :mod:`lzflow.merge`, unchanged. ``two_sided``: the Feldman–Cousins-style Neyman construction
with the profile likelihood ratio t_μ and toy critical values (Baxter et al., arXiv:2105.00599;
:mod:`lzflow.stats.construction`). It is computed from the same toy files: the POI grid gets
μ = 0 in front (:func:`poi_points`, POI index 0: S+B toys at μ = 0, and the B-only toys are tested
there), so that μ_lo and the fraction of background-only intervals with μ_lo > 0 are resolved;
t_μ = 2[NLL(μ) − NLL(μ̂ ≥ 0)] comes from the q̃ records (both fits are stored), hence
``test_statistic: qtilde`` is required. The one-sided limits are still computed, on the grid
points μ > 0 (at μ = 0 every q̃ is 0), and kept in ``limits``; ``limit.json["two_sided"]``
(:func:`two_sided_section`) holds the belt, the expected μ_up bands (cm²), the PCL and the observed
interval, and the curve's headline numbers are the two-sided ones (:func:`curve_columns`).

Discovery from toys
-------------------
``stats.discovery_from_toys: {n_bonly: N_B, n_sb: N_SB}`` (null, the default, = off: no number
is filled in for a missing key): merge runs :func:`lzflow.stats.discovery.discovery_from_toys`
per mass — N_B background-only toys drawn from the defensive mixture (importance sampling, the
B-only model and Asimov 3σ and 5σ signals; tail p-values at 3σ and 5σ with their relative errors)
and N_SB signal toys at each of :data:`N_GRID` μ values from 0.3 × to 5 × the workspace's
asymptotic discovery potential, geometric — and writes the 3σ and 5σ median discovery potentials
from toys beside the asymptotic ones (:func:`discovery_section`). Own random streams (POI index
1000 + k, 2000 + j), independent of the limit's toys.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .exceptions import ConfigError, MergeError

__all__ = ["CONSTRUCTIONS", "N_GRID", "MAX_EXTENSION_ROUNDS", "EXTEND_ABOVE", "extended_records", "GRID_SPAN", "TAIL_REL_ERR_MAX", "check_stats", "two_sided",
           "poi_points", "workspace_grid", "merge_keys", "two_sided_section",
           "discovery_section", "limit_sections", "add_limit_sections", "curve_columns", "EXTRA_COLUMNS"]

CONSTRUCTIONS = ("one_sided", "two_sided")
#: μ points of the toy discovery potential, geometric over GRID_SPAN × the asymptotic 3σ potential
#: (the 5σ one is ≈ 5/3 × it with many events, ≈ 2–2.5 × at a few events)
N_GRID = 20
GRID_SPAN = (0.3, 5.0)
#: the issue's bound on the tail estimate's relative error (issue 14): a larger one is a warning
TAIL_REL_ERR_MAX = 0.10
#: the discovery significances reported (their tails are the importance-sampling components)
Z_REPORTED = (3, 5)


def two_sided(stats: Mapping[str, Any]) -> bool:
    """Whether the resolved ``stats`` ask for the two-sided construction."""
    return stats.get("construction", "one_sided") == "two_sided"


def check_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The resolved ``stats`` block, refused (one line naming the key) where the construction or
    the discovery toys cannot work: two_sided needs the q̃ toy records and the binned likelihood."""
    if two_sided(stats):
        if stats["test_statistic"] != "qtilde":
            raise ConfigError(f"stats.construction: two_sided with stats.test_statistic {stats['test_statistic']!r}; "
                              f"expected qtilde (t_mu is computed from the q-tilde toys' fits, mu_hat >= 0)")
        if stats["likelihood"] != "binned":
            raise ConfigError(f"stats.construction: two_sided with stats.likelihood {stats['likelihood']!r}; "
                              f"expected binned (the observed t_mu is a binned fit)")
    return stats


def poi_points(stats: Mapping[str, Any], label: str) -> int:
    """POI indices with S+B toy files: the configured points, and μ = 0 in front with two_sided."""
    return int(stats["per_mass"][label]["poi_grid"]["n_points"]) + (1 if two_sided(stats) else 0)


def workspace_grid(stats: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The workspace spec's POI grid: the per-mass settings, ``include_zero: true`` with two_sided
    (one_sided specs are unchanged)."""
    grid = stats["per_mass"][label]["poi_grid"]
    return {**grid, "include_zero": True} if two_sided(stats) else grid


def merge_keys(stats: Mapping[str, Any]) -> dict[str, Any]:
    """What the merge spec adds: ``construction: two_sided`` and ``discovery_from_toys`` when on
    (nothing for a one_sided analysis without discovery toys: its merge spec is unchanged)."""
    out: dict[str, Any] = {"construction": "two_sided"} if two_sided(stats) else {}
    if stats.get("discovery_from_toys"):
        out["discovery_from_toys"] = dict(stats["discovery_from_toys"])
    return out


def _cm2(x: Any, sigma_ref: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x) * sigma_ref


#: most rounds of two-sided grid points added above the grid, and the factors of each round
MAX_EXTENSION_ROUNDS = 3
EXTEND_ABOVE = (1.5, 2.25)


def extended_records(mus: np.ndarray, sb: Sequence[Mapping], b: Mapping,
                     extra: Sequence[tuple[str, Mapping, Mapping]]) -> tuple[np.ndarray, list[Mapping], dict, list[int]]:
    """(grid, S+B ensembles, B-only records, POI indices) over the configured grid and the points
    merge added (``extra``: its (label, records, header) entries; S+B with ``hypothesis`` "sb", the
    B-only toys regenerated from their seeds and evaluated at the new μ otherwise), sorted by μ. The
    B-only records keep only what t_μ needs (:func:`lzflow.stats.construction.records_t`)."""
    n = np.asarray(b["nll_uncond"]).shape[0]
    mu_b = [np.asarray(b["mu_test"], dtype=np.float64).reshape(-1)]
    nll = [np.asarray(b["nll_cond"], dtype=np.float64).reshape(n, -1)]
    st = [np.asarray(b["status_cond"]).reshape(n, -1)]
    mu_all, sb_all, idx = list(np.asarray(mus, dtype=np.float64)), list(sb), list(range(len(mus)))
    for _, recs, header in extra:
        if header["hypothesis"] == "sb":
            mu_all.append(float(np.asarray(recs["mu_test"]).reshape(-1)[0]))
            sb_all.append(recs)
            idx.append(int(header["poi_index"]))
        else:
            mu_b.append(np.asarray(recs["mu_test"], dtype=np.float64).reshape(-1))
            nll.append(np.asarray(recs["nll_cond"], dtype=np.float64).reshape(n, -1))
            st.append(np.asarray(recs["status_cond"]).reshape(n, -1))
    order = np.argsort(mu_all, kind="stable")
    b_all = {"mu_test": np.concatenate(mu_b), "nll_cond": np.hstack(nll), "status_cond": np.hstack(st),
             **{k: np.asarray(b[k]) for k in ("mu_hat", "nll_uncond", "status_uncond")}}
    return (np.asarray(mu_all)[order], [sb_all[i] for i in order], b_all, [idx[i] for i in order])


def _needs_points_above(res: Any) -> bool:
    """Whether a two-sided result needs grid points above its top: the dataset's μ_up or a band
    beyond it."""
    up = (res.observed or {}).get("mu_up_status")
    return up == "above_grid" or any(bd.status == "lower_bound" for bd in res.bands.values())


def two_sided_section(model: Any, counts: np.ndarray, aux: np.ndarray, mus: np.ndarray, sb: Sequence[Mapping],
                      b: Mapping, spec: Mapping[str, Any], test_stat: str, sigma_ref: float,
                      observed_is_data: bool, extend: tuple[Callable, list] | None = None
                      ) -> tuple[dict[str, Any], list[str]]:
    """(``limit.json["two_sided"]``, warnings): :func:`lzflow.stats.construction.two_sided_result`
    on the configured grid (μ = 0 first) and the points merge added beyond its edges, the observed
    dataset's t_μ (the data when unblinded, else the Asimov background-only dataset: its PCL is the
    headline limit, as the one-sided PCL), and every μ in cm² (× σ_ref).

    ``extend`` = (merge's ``add_points(mu_new, poi_index_new)``, the list it appends the new
    records to): when the dataset's μ_up or a band lies above the grid's top μ_max, points
    μ_max × :data:`EXTEND_ABOVE` are added (S+B toys with new POI indices, the B-only toys
    regenerated from their seeds and evaluated there), up to :data:`MAX_EXTENSION_ROUNDS` rounds;
    deterministic, so the same config gives the same document."""
    from .stats.bands import POWER_THRESHOLD
    from .stats.belt_toys import observed_t
    from .stats.construction import two_sided_result

    if mus[0] != 0.0:
        raise MergeError(f"two_sided merge on a POI grid starting at {mus[0]:g}; expected mu = 0 first "
                         f"(workspace made for stats.construction: two_sided)")
    threshold = spec.get("power_threshold")
    added: list[dict[str, Any]] = []
    for r in range(MAX_EXTENSION_ROUNDS + 1):
        grid, sb_all, b_all, poi_index = extended_records(mus, sb, b, extend[1] if extend else [])
        t_obs, fit = observed_t(model, counts, aux, grid)
        try:
            res = two_sided_result(grid, sb_all, b_all, t_obs, float(spec["cl"]), float(threshold or POWER_THRESHOLD),
                                   test_stat)
        except ValueError as err:
            raise MergeError(f"two_sided construction: {err}") from None
        if extend is None or r == MAX_EXTENSION_ROUNDS or not _needs_points_above(res):
            break
        mu_new = grid[-1] * np.asarray(EXTEND_ABOVE)
        idx_new = max(poi_index) + 1 + np.arange(mu_new.size)
        extend[0](mu_new, idx_new)
        added.append({"round": r + 1, "mu": mu_new.tolist(), "poi_index": idx_new.tolist()})
    d = res.as_dict()
    d["poi_index"] = poi_index
    if added:
        d["grid_extension"] = added
    obs = d.pop("observed")
    up = obs["pcl_mu_up"] if threshold else obs["mu_up"]
    d["expected_sigma_cm2"] = {n: _cm2(v, sigma_ref) for n, v in d["expected_mu_up"].items()}
    d["expected_bound_sigma_cm2"] = {n: _cm2(d["expected_bound_mu_up"][n], sigma_ref)
                                     for n, s in d["expected_status"].items() if s != "ok"}
    d["pcl_floor_sigma_cm2"] = _cm2(d["pcl_floor_mu_up"], sigma_ref) if threshold else None
    interval = {**obs, "pcl_applied": bool(threshold), "limit_mu": up, "limit_sigma_cm2": _cm2(up, sigma_ref),
                "sigma_lo_cm2": _cm2(obs["mu_lo"], sigma_ref), "sigma_up_cm2": _cm2(obs["mu_up"], sigma_ref),
                "fit": fit}
    d["observed" if observed_is_data else "asimov"] = interval
    d["dataset"] = "data" if observed_is_data else "Asimov background-only (blind: no data read)"
    d["note"] = ("interval [mu_lo, mu_up] = {mu: t_mu <= t_crit(mu)}; expected_* are quantiles of the B-only "
                 "experiments' mu_up; limit_* the power-constrained mu_up (PCL at the power_threshold quantile)")
    warnings = [f"two-sided {n}σ band: {s.replace('_', ' ')} (grid edge)" for n, s in d["expected_status"].items()
                if s != "ok"]
    return d, warnings


def _crossing(mu: np.ndarray, z_toys: np.ndarray, z: float) -> tuple[float, int]:
    """(smallest μ where the toy significance Z(μ) = Φ⁻¹(1 − p₀) reaches ``z``, linear in Z between
    grid points — Z is ∝ μ asymptotically, so this is nearly exact where ln p₀ is not —, the index
    of the first point at or above it; (inf, -1) when the grid's top does not reach ``z``)."""
    above = np.flatnonzero(z_toys >= z)
    if above.size == 0:
        return float("inf"), -1
    k = int(above[0])
    if k == 0 or not np.isfinite(z_toys[k]):
        return float(mu[k]), k
    return float(mu[k - 1] + (mu[k] - mu[k - 1]) * (z - z_toys[k - 1]) / (z_toys[k] - z_toys[k - 1])), k


def discovery_section(model: Any, ws: Mapping[str, Any], settings: Mapping[str, Any], mass_key: int,
                      n_bonly: int, n_sb: int, observed: tuple[np.ndarray, np.ndarray] | None) -> tuple[dict, list[str]]:
    """(``limit.json["discovery"]``, warnings) — module docstring. μ_Z(toys) is where the p-value
    of the S+B toys' median q₀ falls to Φ(−Z). Its error adds in quadrature (i) the importance-
    sampling error of that p-value at the crossing as δZ = δp₀/φ(Z) divided by the slope dZ/dμ and (ii) the
    median's MC noise: √q₀ ≈ N(Z μ/μ_Z, 1) (arXiv:1007.1727), the median of N_SB draws has error
    √(π/2)/√N_SB, so δμ/μ_Z = √(π/(2 N_SB))/Z (an asymptotic approximation)."""
    from scipy.stats import norm

    from .stats.asymptotic import discovery_potential
    from .stats.discovery import discovery_from_toys
    from .stats.fit import BatchedFitter
    from .stats.fitresult import FitConfig
    from .stats.toys import generation_point

    sigma_ref = float(ws["sigma_ref_cm2"])
    mu3 = float(ws["asymptotic"]["discovery_mu"]) * (3.0 / float(ws["asymptotic"]["discovery_sigma"]))
    grid = mu3 * np.geomspace(*GRID_SPAN, N_GRID)
    res = discovery_from_toys(model, n_toys_b=n_bonly, n_toys_sb=n_sb, base_seed=int(settings["seed"]),
                              mass_key=mass_key, z=3.0, mu_grid=grid, observed=observed, sigma_ref_cm2=sigma_ref)
    theta0 = generation_point(model, 0.0, observed, BatchedFitter(model, FitConfig(n_threads=1)))[0][1:]
    doc = res.as_dict()
    tails = {round(t["z"]): t for t in doc["background_only"]["tails"]}
    p, perr, mus = res.p0, res.p0_err, res.mu_grid
    potentials, warnings = {}, []
    with np.errstate(divide="ignore"):
        z_toys = np.where(p > 0, norm.isf(p), np.inf)
    for z in Z_REPORTED:
        mu_t, k = _crossing(mus, z_toys, float(z))
        mu_a = res.mu_asymptotic if z == 3 else float(discovery_potential(model, z=float(z), theta=theta0))
        err = None
        if k > 0 and np.all(np.isfinite(z_toys[k - 1:k + 1])) and z_toys[k] > z_toys[k - 1]:
            slope = (z_toys[k] - z_toys[k - 1]) / (mus[k] - mus[k - 1])  # dZ/dμ
            dz = max(perr[k - 1], perr[k]) / norm.pdf(z)  # δZ = δp₀ / φ(Z)
            err = float(np.hypot(dz / slope, mu_t * np.sqrt(np.pi / (2.0 * n_sb)) / z))
        potentials[str(z)] = {"mu_toys": _finite(mu_t), "mu_toys_err": err, "mu_asymptotic": _finite(mu_a),
                              "sigma_cm2_toys": _cm2(mu_t, sigma_ref), "sigma_cm2_toys_err": _cm2(err, sigma_ref),
                              "sigma_cm2_asymptotic": _cm2(mu_a, sigma_ref),
                              "ratio_toys_to_asymptotic": _finite(mu_t / mu_a) if mu_a > 0 else None,
                              "tail_p0": tails[z]["p0"], "tail_rel_err": tails[z]["rel_err"]}
        if not np.isfinite(mu_t):
            warnings.append(f"discovery {z}σ from toys: not reached on the grid (up to {mus[-1]:.3g} mu)")
        if not tails[z]["rel_err"] <= TAIL_REL_ERR_MAX:
            warnings.append(f"discovery {z}σ tail: relative error {tails[z]['rel_err']:.3g} > {TAIL_REL_ERR_MAX:g}; "
                            f"raise stats.discovery_from_toys.n_bonly")
    out = {"method": doc["background_only"]["method"], "n_bonly": n_bonly, "n_sb": n_sb,
           "potentials": potentials, "grid": doc["grid"], "background_only": doc["background_only"],
           "note": "median Z-sigma discovery potential: the mu whose S+B toys' median q0 has p0 = Phi(-Z) under the "
                   "weighted B-only ensemble; asymptotic: q0,A(mu) = Z^2 (arXiv:1007.1727)"}
    return out, warnings


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def add_limit_sections(doc: dict[str, Any], warnings: list[str], model: Any, ws: Mapping[str, Any],
                       counts: np.ndarray, aux: np.ndarray, sb: Mapping[int, Mapping], b: Mapping,
                       spec: Mapping[str, Any], settings: Mapping[str, Any], mass_key: int,
                       observed_is_data: bool, extend: tuple[Callable, list] | None = None) -> None:
    """Add to merge's ``doc`` (and ``warnings``) what :func:`limit_sections` returns."""
    sections, more = limit_sections(model, ws, counts, aux, sb, b, spec, settings, mass_key, observed_is_data,
                                    extend)
    doc.update(sections)
    warnings += more


def limit_sections(model: Any, ws: Mapping[str, Any], counts: np.ndarray, aux: np.ndarray, sb: Mapping[int, Mapping],
                   b: Mapping, spec: Mapping[str, Any], settings: Mapping[str, Any], mass_key: int,
                   observed_is_data: bool, extend: tuple[Callable, list] | None = None
                   ) -> tuple[dict[str, Any], list[str]]:
    """({"construction", "two_sided", "discovery"} as the merge spec asks — empty for a one_sided
    spec without discovery toys, so its limit.json is unchanged —, warnings). ``sb``: the S+B
    toy records by POI index, ``b`` the B-only records (as :func:`lzflow.merge.collect_toys`);
    ``extend``: merge's grid extension (:func:`two_sided_section`), whose records so far it also uses."""
    out: dict[str, Any] = {}
    warnings: list[str] = []
    if spec.get("construction", "one_sided") == "two_sided":
        mus = np.asarray(ws["poi_grid"], dtype=np.float64)
        out["construction"] = "two_sided"
        out["two_sided"], w = two_sided_section(model, counts, aux, mus, [sb[k] for k in range(mus.size)], b, spec,
                                                settings["test_statistic"], float(ws["sigma_ref_cm2"]),
                                                observed_is_data, extend)
        warnings += w
    if spec.get("discovery_from_toys"):
        d = spec["discovery_from_toys"]
        out["discovery"], w = discovery_section(model, ws, settings, mass_key, int(d["n_bonly"]), int(d["n_sb"]),
                                                (counts, aux) if observed_is_data else None)
        warnings += w
    return out, warnings


#: curve CSV columns after the observed ones, each present only when a row has it
EXTRA_COLUMNS = ["construction", "sigma_one_sided_median_cm2", "sigma_one_sided_pcl_cm2", "sigma_observed_lo_cm2",
                 "sigma_discovery_3sigma_toys_cm2", "sigma_discovery_3sigma_toys_err_cm2",
                 "sigma_discovery_5sigma_cm2", "sigma_discovery_5sigma_toys_cm2",
                 "sigma_discovery_5sigma_toys_err_cm2", "discovery_3sigma_tail_rel_err",
                 "discovery_5sigma_tail_rel_err"]


def curve_columns(doc: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """Curve-row updates of one limit document: with ``two_sided`` the headline columns (median,
    bands, their bounds, PCL; the observed limit with data) become the two-sided ones,
    ``construction`` says so and the one-sided median and PCL move to their own columns; with
    ``discovery`` the toy 3σ/5σ potentials, their errors, the asymptotic 5σ one and the tails'
    relative errors. Empty for other documents (the CSV is then as before)."""
    out: dict[str, Any] = {}
    ts = doc.get("two_sided")
    if ts is not None:
        exp = ts["expected_sigma_cm2"]
        bounds = ts.get("expected_bound_sigma_cm2") or {}
        out.update(construction="two_sided", sigma_one_sided_median_cm2=row.get("sigma_median_cm2"),
                   sigma_one_sided_pcl_cm2=row.get("sigma_pcl_cm2"),
                   sigma_median_cm2=exp["0"], sigma_m2_cm2=exp["-2"], sigma_m1_cm2=exp["-1"], sigma_p1_cm2=exp["1"],
                   sigma_p2_cm2=exp["2"], pcl_status=(ts.get("asimov") or ts.get("observed") or {}).get("pcl_status"))
        for n, col in (("-2", "m2"), ("-1", "m1"), ("0", "median"), ("1", "p1"), ("2", "p2")):
            status, bound = ts["expected_status"][n], bounds.get(n)
            out[f"sigma_{col}_bound"] = (None if status == "ok" or bound is None else
                                         f"{'<=' if status == 'upper_bound' else '>='}{bound:.6g}")
        if "asimov" in ts:
            out["sigma_pcl_cm2"] = ts["asimov"]["limit_sigma_cm2"]
        if "observed" in ts:
            out.update(sigma_pcl_cm2=ts["observed"]["limit_sigma_cm2"],
                       sigma_observed_cm2=ts["observed"]["limit_sigma_cm2"],
                       sigma_observed_lo_cm2=ts["observed"]["sigma_lo_cm2"])
    disc = doc.get("discovery")
    if disc is not None:
        p3, p5 = disc["potentials"]["3"], disc["potentials"]["5"]
        out.update(sigma_discovery_3sigma_toys_cm2=p3["sigma_cm2_toys"],
                   sigma_discovery_3sigma_toys_err_cm2=p3["sigma_cm2_toys_err"],
                   sigma_discovery_5sigma_cm2=p5["sigma_cm2_asymptotic"],
                   sigma_discovery_5sigma_toys_cm2=p5["sigma_cm2_toys"],
                   sigma_discovery_5sigma_toys_err_cm2=p5["sigma_cm2_toys_err"],
                   discovery_3sigma_tail_rel_err=p3["tail_rel_err"], discovery_5sigma_tail_rel_err=p5["tail_rel_err"])
    return out
