"""Import a pyhf JSON workspace (HistFactory; pyhf ≥ 0.7) as a :class:`~lzflow.stats.model.BinnedModel`:
exactly, or not at all.

lzflow's model (:mod:`lzflow.stats.model`) is::

    ν(μ, θ, α) = μ s(α) + Σ_b [θ_b B_b + Σ_k Δ_kb(α_k)]
    NLL        = Σ_i [ν_i − n_i ln ν_i] + Σ_{b: r_b>0} (a_b − θ_b)²/(2 r_b²) + Σ_k (a_k − α_k)²/2

with Δ the HistFactory code-4p morphing (:mod:`lzflow.stats.morphing`, pyhf ≥ 0.7's default
``histosys`` interpolation). pyhf's expected counts are (HistFactory, CERN-OPEN-2012-016; pyhf's
"Modifiers" documentation)::

    ν_i = Σ_s (T_si + Σ_k Δ_ksi(α_k)) · Π_m κ_msi(η_m)

(additive ``histosys`` deltas first, then the multiplicative modifiers), times one constraint term
per parameter. The translation, each line exact (the NLLs differ by a constant; the pure-rate
``histosys`` to the :data:`RATE_RTOL` with which it is recognised):

=========================================  ========================================================
pyhf                                       lzflow
=========================================  ========================================================
``normfactor`` = the POI, on samples S     μ; signal s = Σ_{s∈S} T_s (their ``histosys`` morph it)
``histosys`` p (code 4p)                   shape systematic p (parameter ``alpha_p``): the ±1σ
                                           rows of each sample it is on, summed per lzflow sample
``histosys`` p with hi = T(1 + r),         a rate θ_p = 1 + r α_p of Σ T over its samples,
lo = T(1 − r) on every sample (same r;     rel_unc r, aux a = 1 + r · aux_p (lzflow's own export,
no lumi/staterror there)                   :mod:`lzflow.stats.pyhf_export`)
``lumi`` λ, Gauss(aux | λ, σ), on          a rate θ = λ of Σ T over its samples, rel_unc σ,
samples without ``histosys``               aux = auxdata
``staterror`` γ_j, Gauss(aux | γ_j, δ_j),  one background per bin j: Σ T_sj over its samples in
δ_j = √Σ_s σ_sj² / Σ_s T_sj (pyhf 0.7),    bin j, rel_unc δ_j (δ_j = 0: fixed at γ_j = init, as
on samples without ``histosys``            pyhf does), aux = auxdata
any parameter ``"fixed": true``            its value (``inits``, else pyhf's default) folded into
                                           the templates: κ(init) for factors, Δ(init) for
                                           ``histosys`` (a ``normsys`` only at 0, where κ = 1)
samples with none of these                 a fixed background per sample name (rel_unc 0)
=========================================  ========================================================

Refused, in one line naming the modifier's type and name, the sample and the channel: a free
``normsys`` (pyhf's code 4 is an exponential/polynomial rate; lzflow's rates are linear with a
Gaussian constraint, so no lzflow model has the same likelihood), ``shapesys`` (Poisson-constrained),
``shapefactor`` and a ``normfactor`` other than the POI (unconstrained rates), any free
multiplicative modifier on a POI sample (μ times a second rate), a product of two free rates on a
sample, and ``lumi``/``staterror`` on a sample with a free ``histosys`` (pyhf: λ (T + Δ); lzflow:
θ T + Δ).

Channels are taken in pyhf's order (sorted by name) and their bins concatenated: pyhf's likelihood,
Π_channels Π_bins Pois × Π_parameters constraint, is then lzflow's Π_bins Pois × Π constraint over
the concatenated bins — the same product, each parameter constrained once.

Not shared (they matter only when a fit ends on one): pyhf's parameter bounds. lzflow keeps
μ ≥ 0 (q̃; no upper bound, pyhf's is recorded in :attr:`ImportedWorkspace.poi_bounds`), θ ≥ 0
and |α| ≤ 5 (pyhf's default ``histosys`` bounds).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .exceptions import WorkspaceError, one_line
from .stats.model import BinnedModel, ModelError, ShapeSystematic
from .stats.morphing import code4p

__all__ = ["PyhfImportError", "ParameterLink", "ImportedWorkspace", "import_workspace", "SUPPORTED", "RATE_RTOL"]

#: what :func:`import_workspace` translates (the module docstring says how)
SUPPORTED = "normfactor (the POI), histosys, lumi, staterror, and any modifier fixed in the measurement"
#: a ``histosys`` is a pure rate when hi − T = r T and T − lo = r T to this relative tolerance
RATE_RTOL = 1e-9
_FACTOR_TYPES = ("normfactor", "lumi", "staterror", "shapesys", "shapefactor")


class PyhfImportError(WorkspaceError):
    """A pyhf workspace that cannot be imported exactly: one line naming what and where."""


@dataclass(frozen=True)
class ParameterLink:
    """lzflow parameter ↔ component ``index`` of pyhf parameter ``pyhf``: pyhf = offset + scale · lzflow
    (the same map takes lzflow's auxiliary observable to pyhf's auxdata)."""

    lzflow: str
    pyhf: str
    index: int = 0
    offset: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class ImportedWorkspace:
    """A pyhf workspace as lzflow's model and observed data (module docstring).

    ``counts``/``aux``: the observed data in lzflow's conventions (aux on the θ scale, then α);
    ``links``: one per lzflow parameter (``model.par_names`` order), ``None`` for fixed backgrounds;
    ``fixed``: pyhf parameters folded into the templates; ``unused``: measurement settings naming
    no modifier (pyhf ignores them too); ``channels``: (name, bins) in bin order.
    """

    model: BinnedModel
    counts: np.ndarray
    aux: np.ndarray
    poi: str
    poi_bounds: tuple[float, float]
    measurement: str
    channels: tuple[tuple[str, int], ...]
    links: tuple[ParameterLink | None, ...]
    fixed: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()

    @property
    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        return self.counts, self.aux

    def pyhf_parameters(self, params: np.ndarray, pyhf_model: Any) -> np.ndarray:
        """pyhf parameter vectors ``(..., npars)`` for lzflow's ``(..., n_par)`` (fixed ones at
        their pyhf init)."""
        params = np.asarray(params, float)
        cfg = pyhf_model.config
        out = np.broadcast_to(np.asarray(cfg.suggested_init(), float), params.shape[:-1] + (cfg.npars,)).copy()
        for j, link in enumerate(self.links):
            if link is not None:
                out[..., cfg.par_slice(link.pyhf).start + link.index] = link.offset + link.scale * params[..., j]
        return out

    def pyhf_data(self, counts: np.ndarray, aux: np.ndarray, pyhf_model: Any) -> np.ndarray:
        """pyhf's data vectors ``[counts, auxdata]`` for lzflow's counts and aux (fixed parameters'
        auxdata at the workspace's values)."""
        counts, aux = np.asarray(counts, float), np.asarray(aux, float)
        cfg = pyhf_model.config
        start, k = {}, 0
        for name in cfg.auxdata_order:
            start[name] = k
            k += cfg.param_set(name).n_parameters
        out = np.broadcast_to(np.asarray(cfg.auxdata, float), aux.shape[:-1] + (k,)).copy()
        for j, link in enumerate(self.links[1:]):
            if link is not None:
                out[..., start[link.pyhf] + link.index] = link.offset + link.scale * aux[..., j]
        lead = np.broadcast_shapes(counts.shape[:-1], aux.shape[:-1])
        return np.concatenate([np.broadcast_to(counts, lead + counts.shape[-1:]),
                               np.broadcast_to(out, lead + out.shape[-1:])], axis=-1)

    def summary(self) -> str:
        m = self.model
        chans = ", ".join(f"{c} ({n})" for c, n in self.channels)
        return (f"measurement {self.measurement!r}, POI {self.poi!r} (pyhf bounds {list(self.poi_bounds)}): "
                f"{m.n_bins} bins in {len(self.channels)} channel(s) [{chans}], {m.n_bkg} backgrounds "
                f"({m.n_free_bkg} with a constrained rate), {m.n_shape} histosys (code 4p)"
                + (f", fixed: {', '.join(self.fixed)}" if self.fixed else "")
                + (f", settings for no modifier: {', '.join(self.unused)}" if self.unused else ""))


@dataclass
class _Piece:
    """One sample in one channel, on the concatenated bins (zero outside its channel)."""

    channel: str
    sample: str
    nominal: np.ndarray
    factor: np.ndarray
    offset: np.ndarray
    histosys: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name → (hi − T, lo − T)
    poi: bool = False
    lumi: str | None = None
    staterror: str | None = None
    uncertainty: np.ndarray | None = None

    @property
    def where(self) -> str:
        return f"on sample {self.sample!r} in channel {self.channel!r}"

    def template(self) -> np.ndarray:
        return self.factor * (self.nominal + self.offset)


def _fail(message: str) -> PyhfImportError:
    return PyhfImportError(one_line(message))


def _validate(spec: Mapping[str, Any]) -> None:
    """pyhf's own JSON schema (workspace.json), as one line naming the path."""
    import pyhf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jsonschema.RefResolver deprecation, inside pyhf
        try:
            pyhf.schema.validate(dict(spec), "workspace.json")
        except pyhf.exceptions.InvalidSpecification as err:
            raise _fail(f"pyhf workspace {err.path or '(top level)'}: {err.parent.message}") from None


def _measurement(spec: Mapping[str, Any], name: str | None) -> dict:
    measurements = spec["measurements"]
    if name is None:
        return measurements[0]
    names = [m["name"] for m in measurements]
    if name not in names:
        raise _fail(f"measurement {name!r}: not in the workspace; expected one of {', '.join(map(repr, names))}")
    return measurements[names.index(name)]


def _scalar(setting: Mapping[str, Any], key: str, default: float) -> float:
    value = setting.get(key)
    return float(value[0]) if value else float(default)


class _Builder:
    """The translation (module docstring), one step per method."""

    def __init__(self, spec: Mapping[str, Any], measurement: Mapping[str, Any]):
        self.poi = measurement["config"]["poi"]
        self.settings = {p["name"]: p for p in measurement["config"].get("parameters", [])}
        self.channels = sorted(spec["channels"], key=lambda c: c["name"])
        sizes = [len(c["samples"][0]["data"]) if c["samples"] else 0 for c in self.channels]
        self.starts = np.r_[0, np.cumsum(sizes)].astype(int)
        self.n_bins = int(self.starts[-1])
        self.types: dict[str, str] = {}
        self.fixed: set[str] = set()
        self.pieces = [self._piece(k, c, s) for k, c in enumerate(self.channels) for s in c["samples"]]

    def span(self, k: int, values: Any, label: str) -> np.ndarray:
        v = np.asarray(values, float)
        n = self.starts[k + 1] - self.starts[k]
        if v.shape != (n,):
            raise _fail(f"{label}: {v.size} values; channel {self.channels[k]['name']!r} has {n} bins")
        if not np.all(np.isfinite(v)):
            raise _fail(f"{label}: NaN or infinite values; expected finite numbers")
        out = np.zeros(self.n_bins)
        out[self.starts[k]: self.starts[k + 1]] = v
        return out

    def _piece(self, k: int, channel: Mapping[str, Any], sample: Mapping[str, Any]) -> _Piece:
        label = f"sample {sample['name']!r} in channel {channel['name']!r}"
        nominal = self.span(k, sample["data"], f"{label}: data")
        if np.any(nominal < 0):
            raise _fail(f"{label}: data has negative values (min {nominal.min():g}); expected ≥ 0")
        piece = _Piece(channel["name"], sample["name"], nominal, np.ones(self.n_bins), np.zeros(self.n_bins))
        for mod in sample["modifiers"]:
            self._modifier(k, piece, mod)
        return piece

    def _modifier(self, k: int, piece: _Piece, mod: Mapping[str, Any]) -> None:
        kind, name = mod["type"], mod["name"]
        what = f"{kind} {name!r} {piece.where}"
        if self.types.setdefault(name, kind) != kind:
            raise _fail(f"{what}: the parameter is also a {self.types[name]}; lzflow needs one type per parameter")
        setting = self.settings.get(name, {})
        for key in ("sigmas", "factors"):
            if setting.get(key) is not None and (kind, key) not in (("lumi", "sigmas"), ("staterror", "sigmas")):
                raise _fail(f"{what}: measurement setting {key!r} is not supported for a {kind}")
        if name == self.poi:
            if kind != "normfactor" or setting.get("fixed"):
                raise _fail(f"{what}: the POI must be a free normfactor")
            piece.poi = True
            return
        if setting.get("fixed"):
            self.fixed.add(name)
            self._fold_fixed(k, piece, mod, setting, what)
            return
        if kind == "histosys":
            if name in piece.histosys:
                raise _fail(f"{what}: the sample has this histosys twice")
            hi = self.span(k, mod["data"]["hi_data"], f"{what}: hi_data")
            lo = self.span(k, mod["data"]["lo_data"], f"{what}: lo_data")
            piece.histosys[name] = (hi - piece.nominal, lo - piece.nominal)
        elif kind in ("lumi", "staterror"):
            if piece.lumi or piece.staterror:
                raise _fail(f"{what}: a second free rate on the sample (a product of rates); lzflow has one rate "
                            f"per background")
            if kind == "lumi":
                piece.lumi = name
            else:
                piece.staterror = name
                piece.uncertainty = self.span(k, mod["data"], f"{what}: data")
        else:
            why = {"normsys": "pyhf's normsys (code 4) is an exponential/polynomial rate, lzflow's rates are linear "
                              "with a Gaussian constraint",
                   "shapesys": "its constraint is Poisson, lzflow's are Gaussian",
                   "shapefactor": "an unconstrained per-bin rate, lzflow's rates are constrained or fixed",
                   "normfactor": "an unconstrained rate besides the POI, lzflow's rates are constrained or fixed"}
            raise _fail(f"{what}: not supported: {why[kind]}; lzflow imports {SUPPORTED}")

    def _fold_fixed(self, k: int, piece: _Piece, mod: Mapping[str, Any], setting: Mapping[str, Any], what: str) -> None:
        """A fixed parameter at its init value, folded into the piece (pyhf: Δ added, then κ multiplies)."""
        kind = mod["type"]
        inits = setting.get("inits")
        if kind == "histosys":
            c = np.array([_scalar(setting, "inits", 0.0)])
            hi = self.span(k, mod["data"]["hi_data"], f"{what}: hi_data")
            lo = self.span(k, mod["data"]["lo_data"], f"{what}: lo_data")
            f = code4p(c)[0][0]
            piece.offset = piece.offset + c[0] * 0.5 * (hi - lo) + f * (0.5 * (hi + lo) - piece.nominal)
        elif kind == "normsys":
            if _scalar(setting, "inits", 0.0) != 0.0:
                raise _fail(f"{what}: fixed at {inits}; lzflow folds in a fixed normsys only at 0 (factor 1)")
        elif kind in ("staterror", "shapesys", "shapefactor"):
            if inits is not None and any(float(v) != 1.0 for v in inits):
                raise _fail(f"{what}: fixed at inits {inits}; lzflow folds in a fixed per-bin factor only at 1")
        elif kind == "lumi":
            piece.factor = piece.factor * _scalar(setting, "inits", _scalar(setting, "auxdata", 1.0))
        else:  # normfactor
            piece.factor = piece.factor * _scalar(setting, "inits", 1.0)

    def observed(self, observations: list[Mapping[str, Any]]) -> np.ndarray:
        """The observed counts on the concatenated bins."""
        obs = {o["name"]: o["data"] for o in observations}
        extra = sorted(set(obs) - {c["name"] for c in self.channels})
        if extra:
            raise _fail(f"observations {extra}: no channel of that name")
        counts = np.zeros(self.n_bins)
        for k, c in enumerate(self.channels):
            if c["name"] not in obs:
                raise _fail(f"channel {c['name']!r}: no observation")
            counts += self.span(k, obs[c["name"]], f"observation {c['name']!r}")
        if np.any(counts < 0):
            raise _fail(f"observations: negative counts (min {counts.min():g}); expected ≥ 0")
        return counts

    # ------------------------------------------------------------------ rates
    def check_samples(self) -> None:
        for p in self.pieces:
            rate = p.lumi or p.staterror
            kind = "lumi" if p.lumi else "staterror"
            if p.poi and rate:
                raise _fail(f"{kind} {rate!r} {p.where}: a free rate on a POI sample (μ times a second rate); "
                            f"lzflow's signal carries the POI and histosys only")
            if rate and p.histosys:
                raise _fail(f"{kind} {rate!r} {p.where}: the sample also has histosys {min(p.histosys)!r}; "
                            f"pyhf scales the varied template (λ (T + Δ)), lzflow's rate only the nominal "
                            f"(θ T + Δ)")
        if not any(p.poi for p in self.pieces):
            raise _fail(f"POI {self.poi!r}: no sample has a normfactor of that name")

    def rate_histosys(self, name: str) -> float | None:
        """r if histosys ``name`` is the pure rate hi = T(1 + r), lo = T(1 − r) on every sample it
        is on (backgrounds without another rate or a folded-in histosys), else None."""
        rs = []
        for p in self.pieces:
            if name not in p.histosys:
                continue
            if p.poi or p.lumi or p.staterror or np.any(p.offset != 0) or not np.any(p.nominal > 0):
                return None
            up, dn = p.histosys[name]
            r = float(up.sum() / p.nominal.sum())
            tol = RATE_RTOL * np.abs(p.nominal).max()
            if not (r > 0 and np.allclose(up, r * p.nominal, rtol=0, atol=tol)
                    and np.allclose(dn, -r * p.nominal, rtol=0, atol=tol)):
                return None
            rs.append(r)
        return rs[0] if rs and np.allclose(rs, rs[0], rtol=RATE_RTOL, atol=0) else None


class _Backgrounds:
    """lzflow's backgrounds as they are built: name, template, rel_unc, aux and pyhf link
    ``(parameter, index, offset, scale)`` of each, and the background each piece went to."""

    def __init__(self, builder: _Builder):
        self.b = builder
        self.rows: list[tuple[str, np.ndarray, float, float, tuple | None]] = []
        self.owner: dict[int, int] = {}
        self.first: list[int] = []  # each background's first piece in the workspace

    def add(self, name: str, members: list[int], rel: float, aux: float, link: tuple | None,
            template: np.ndarray | None = None) -> None:
        for i in members:
            self.owner[i] = len(self.rows)
        self.first.append(min(members))
        taken = {r[0] for r in self.rows}
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}#{k}", k + 1
        tmpl = sum(self.b.pieces[i].template() for i in members) if template is None else template
        self.rows.append((unique, tmpl, rel, aux, link))

    def build(self) -> list[str]:
        """Every background (module docstring); returns the histosys left as shape systematics.
        Backgrounds come in the order of their first sample in the workspace."""
        b = self.b

        def first_seen(names: Any) -> list[str]:  # channels sorted, samples as written
            return list(dict.fromkeys(n for n in names if n))

        shapes = []
        for name in first_seen(n for p in b.pieces for n in p.histosys):
            r = b.rate_histosys(name)
            members = [i for i, p in enumerate(b.pieces) if name in p.histosys]
            if r is None or any(i in self.owner for i in members):
                shapes.append(name)
                continue
            self.add(name, members, r, 1.0 + r * _scalar(b.settings.get(name, {}), "auxdata", 0.0),
                     (name, 0, -1.0 / r, 1.0 / r))
            for i in members:
                del b.pieces[i].histosys[name]
        for name in first_seen(p.lumi for p in b.pieces):
            s = b.settings.get(name, {})
            if not s.get("sigmas") or not s.get("auxdata"):
                raise _fail(f"lumi {name!r}: the measurement must give its auxdata and sigmas (as pyhf requires)")
            self.add(name, [i for i, p in enumerate(b.pieces) if p.lumi == name], _scalar(s, "sigmas", 0),
                     _scalar(s, "auxdata", 1), (name, 0, 0.0, 1.0))
        for name in first_seen(p.staterror for p in b.pieces):
            _add_staterror(b, name, self.add)
        for i, p in enumerate(b.pieces):
            if not p.poi and i not in self.owner:
                self.add(p.sample, [i], 0.0, 1.0, None)
        order = sorted(range(len(self.rows)), key=lambda j: self.first[j])  # stable: staterror bins in order
        rank = {j: k for k, j in enumerate(order)}
        self.rows = [self.rows[j] for j in order]
        self.owner = {i: rank[o] for i, o in self.owner.items()}
        return shapes


def import_workspace(spec: Mapping[str, Any], measurement: str | None = None) -> ImportedWorkspace:
    """The lzflow model and observed data of a pyhf workspace ``spec`` (a dict as in the JSON file),
    for ``measurement`` (default: the first, as ``pyhf.Workspace.model()``). Raises
    :class:`PyhfImportError` (one line) for anything it cannot translate exactly (module docstring)."""
    _validate(spec)
    meas = _measurement(spec, measurement)
    b = _Builder(spec, meas)
    b.check_samples()
    bg = _Backgrounds(b)
    shapes = bg.build()
    rows = bg.rows
    signal = sum(p.template() for p in b.pieces if p.poi)
    systematics = _shape_systematics(b, shapes, bg.owner, signal, [r[1] for r in rows])
    signal_name = "+".join(sorted({p.sample for p in b.pieces if p.poi}))
    names = tuple(r[0] for r in rows)
    try:
        model = BinnedModel(signal, np.array([r[1] for r in rows]) if rows else np.zeros((0, b.n_bins)), names,
                            np.array([r[2] for r in rows]), signal_name + "#signal" * (signal_name in names),
                            shape_systematics=tuple(systematics))
    except (ModelError, ValueError) as err:
        raise _fail(f"pyhf workspace: {err}") from None
    aux = np.r_[[r[3] for r in rows], [_scalar(b.settings.get(n, {}), "auxdata", 0.0) for n in shapes]]
    links = (ParameterLink("mu", b.poi),) + tuple(r[4] and ParameterLink(r[0], *r[4]) for r in rows) + tuple(
        ParameterLink(sy.parameter, n) for sy, n in zip(systematics, shapes))
    bounds = b.settings.get(b.poi, {}).get("bounds") or [[0.0, 10.0]]  # pyhf's normfactor default
    return ImportedWorkspace(
        model=model, counts=b.observed(spec["observations"]), aux=aux, poi=b.poi,
        poi_bounds=(float(bounds[0][0]), float(bounds[0][1])), measurement=meas["name"],
        channels=tuple((c["name"], int(b.starts[k + 1] - b.starts[k])) for k, c in enumerate(b.channels)),
        links=links, fixed=tuple(sorted(b.fixed)), unused=tuple(sorted(set(b.settings) - set(b.types) - {b.poi})),
    )


def _add_staterror(b: _Builder, name: str, add: Any) -> None:
    """One background per bin of staterror ``name`` (pyhf 0.7's δ_j; δ_j = 0: fixed at its init)."""
    members = [i for i, p in enumerate(b.pieces) if p.staterror == name]
    mask = np.zeros(b.n_bins, bool)
    for i in members:
        k = [c["name"] for c in b.channels].index(b.pieces[i].channel)
        mask[b.starts[k]: b.starts[k + 1]] = True
    bins = np.flatnonzero(mask)
    nom = sum(b.pieces[i].nominal for i in members)
    unc2 = sum(b.pieces[i].uncertainty ** 2 for i in members)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(nom > 0, np.sqrt(unc2) / np.where(nom > 0, nom, 1.0), 0.0)[bins]
    s = b.settings.get(name, {})
    for key in ("sigmas", "auxdata", "inits"):
        if s.get(key) is not None and len(s[key]) != bins.size:
            raise _fail(f"staterror {name!r}: measurement setting {key!r} has {len(s[key])} values for "
                        f"{bins.size} bins")
    sigmas = np.asarray(s.get("sigmas") or np.where(delta > 0, delta, 1.0), float)
    aux = np.asarray(s.get("auxdata") or np.ones(bins.size), float)
    inits = np.asarray(s.get("inits") or np.ones(bins.size), float)
    template = sum(b.pieces[i].template() for i in members)
    for k, j in enumerate(bins):
        t = np.zeros(b.n_bins)
        t[j] = template[j]
        if delta[k] > 0:
            add(f"{name}[{k}]", members, float(sigmas[k]), float(aux[k]), (name, k, 0.0, 1.0), template=t)
        else:  # pyhf fixes γ_j where δ_j = 0 (its staterror builder): a fixed background at γ_j = init
            add(f"{name}[{k}]", members, 0.0, 1.0, None, template=t * inits[k])


def _shape_systematics(b: _Builder, names: list[str], owner: dict[int, int], signal: np.ndarray,
                       backgrounds: list[np.ndarray]) -> list[ShapeSystematic]:
    """Each remaining histosys as lzflow's shape systematic: per lzflow sample, nominal + Σ κ δ^±."""
    out = []
    nominal = np.vstack([signal[None, :]] + [t[None, :] for t in backgrounds])
    for name in names:
        up, dn = nominal.copy(), nominal.copy()
        for i, p in enumerate(b.pieces):
            if name in p.histosys:
                row = 0 if p.poi else 1 + owner[i]
                up[row] += p.factor * p.histosys[name][0]
                dn[row] += p.factor * p.histosys[name][1]
        try:  # lzflow calls the parameter alpha_<name>: pyhf's "alpha_x" stays "alpha_x", "x" becomes "alpha_x"
            out.append(ShapeSystematic(name.removeprefix("alpha_"), up, dn))
        except ValueError as err:
            raise _fail(f"histosys {name!r}: {err}") from None
    return out
