"""Resilience studies over a time series: N-1, sampled N-k, loss of the upstream grid.

Every study is a list of :class:`Case` objects (branches out of service during a window of
steps) simulated *together*, step by step, with the batch power flow: at each step all
cases form one batch (grouped by topology inside :class:`twin.grid.pf.BatchPowerFlow`).
That keeps the work vectorized and makes islanded operation time-coupled:

* An island with an ext_grid is supplied as usual. An island with a grid-forming storage
  (:class:`GridFormingStorage`) is solved with that storage as voltage reference and
  balancing unit; an island with neither is de-energized.
* The grid-forming storage may supply at most ``power_mw`` and what its state of charge
  allows for the step (down to ``soc_min``); it may absorb at most ``power_mw`` and what
  fits below full charge. Its state of charge evolves step by step (one-way efficiency
  ``efficiency`` on charge and discharge). While the upstream grid is there it holds its
  state of charge (its grid-connected schedule is not part of the study).
* When an island's balance is out of these limits, first the island's generation (sgen)
  is curtailed if the storage would be over-charged, then loads are shed by priority
  class (lowest ``priority`` first, one class per round) until the island is feasible;
  if only shedding every class would do, the island collapses (de-energized for the
  step). Each step starts again from no shedding, so loads reconnect as soon as the
  energy allows and everything reconnects when the upstream grid returns.

Metrics per case (table ``cases``): energy not served (kWh, unserved demand of
de-energized or shed loads), customers interrupted (at least once), customer-minutes
interrupted, SAIFI/SAIDI-style indices (interruptions and minutes per customer of the
feeder), island survival time (minutes from the first islanded step until the
grid-forming island first collapses, or the end of the window), min/max voltage of
energized buses, overloaded branches (loading above the limit at any step). Table
``steps`` holds one row per (case, step). Load convention: demand positive; only
positive demand counts as not served.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from twin.grid.pf import BatchPowerFlow, GridFormingUnit, PowerFlowResult

__all__ = [
    "Case",
    "GridFormingStorage",
    "Profiles",
    "StudyResult",
    "contingency_cases",
    "run_study",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

CaseKind = Literal["base", "n-1", "n-k", "upstream_loss"]


@dataclass(frozen=True)
class Case:
    """Branches out of service during steps ``[start_step, end_step)`` (None: to the end).

    ``lines_out`` / ``trafos_out`` are row positions in ``net.line`` / ``net.trafo``.
    """

    name: str
    kind: CaseKind
    lines_out: tuple[int, ...] = ()
    trafos_out: tuple[int, ...] = ()
    start_step: int = 0
    end_step: int | None = None


@dataclass(frozen=True)
class GridFormingStorage:
    """A storage (``net.storage`` index label) that forms islands, with its energy limits."""

    index: int
    energy_mwh: float
    power_mw: float
    soc_initial: float = 0.9
    soc_min: float = 0.1
    efficiency: float = 0.95
    vm_pu: float = 1.0


@dataclass(frozen=True, eq=False)
class Profiles:
    """Set-points per step, (T, n) in the row order of each table (load convention for
    loads and storage, generation-positive for sgen), and the step length."""

    step_s: int
    load_p_mw: FloatArray
    load_q_mvar: FloatArray
    sgen_p_mw: FloatArray
    storage_p_mw: FloatArray

    @property
    def n_steps(self) -> int:
        return int(self.load_p_mw.shape[0])


@dataclass(frozen=True, eq=False)
class StudyResult:
    """``cases``: one row per case; ``steps``: one row per (case, step); ``kpis``: flat."""

    cases: pa.Table
    steps: pa.Table
    kpis: dict[str, float]


# --------------------------------------------------------------------------- case sets


def _upstream_branches(net: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rows of the lines and trafos that connect the ext_grid bus(es) to the feeder."""
    eg = set(net.ext_grid.bus[net.ext_grid.in_service.astype(bool)].astype(int))
    lines = tuple(
        int(i) for i, (f, t) in enumerate(zip(net.line.from_bus, net.line.to_bus, strict=True))
        if (int(f) in eg) != (int(t) in eg)
    )
    trafos = tuple(
        int(i) for i, (h, lv) in enumerate(zip(net.trafo.hv_bus, net.trafo.lv_bus, strict=True))
        if (int(h) in eg) != (int(lv) in eg)
    )
    return lines, trafos


def contingency_cases(
    net: Any,
    *,
    n_minus_1: bool = True,
    k: int = 2,
    n_k_samples: int = 0,
    upstream_windows: Sequence[tuple[int, int]] = (),
    rng: np.random.Generator | None = None,
) -> list[Case]:
    """The base case, N-1 of every in-service line and trafo, ``n_k_samples`` distinct
    random N-``k`` sets (drawn with ``rng``), and one upstream-loss case per
    ``(start_step, end_step)`` window (the branches between ext_grid and feeder out)."""
    cases = [Case("base", "base")]
    lines = np.flatnonzero(net.line.in_service.to_numpy(dtype=bool))
    trafos = np.flatnonzero(net.trafo.in_service.to_numpy(dtype=bool))
    if n_minus_1:
        cases += [Case(f"line_{net.line.index[i]}", "n-1", lines_out=(int(i),)) for i in lines]
        cases += [Case(f"trafo_{net.trafo.index[i]}", "n-1", trafos_out=(int(i),)) for i in trafos]
    if n_k_samples:
        if rng is None:
            raise ValueError("n_k_samples > 0 needs an rng (the run's seeded generator)")
        pool = [("line", int(i)) for i in lines] + [("trafo", int(i)) for i in trafos]
        if k < 2 or k > len(pool):
            raise ValueError(f"k: must be between 2 and {len(pool)} branches, got {k}")
        n_sets = math.comb(len(pool), k)
        seen: set[tuple[int, ...]] = set()
        while len(seen) < min(n_k_samples, n_sets):
            seen.add(tuple(sorted(int(x) for x in rng.choice(len(pool), size=k, replace=False))))
        for combo in sorted(seen):
            out = [pool[j] for j in combo]
            cases.append(Case(
                "n-k_" + "+".join(f"{e}_{(net.line if e == 'line' else net.trafo).index[i]}" for e, i in out),
                "n-k",
                lines_out=tuple(i for e, i in out if e == "line"),
                trafos_out=tuple(i for e, i in out if e == "trafo"),
            ))
    up_l, up_t = _upstream_branches(net)
    for start, end in upstream_windows:
        if not 0 <= start < end:
            raise ValueError(f"upstream outage window: need 0 <= start < end, got ({start}, {end})")
        cases.append(Case(f"upstream_{start}_{end}", "upstream_loss", up_l, up_t, start, end))
    return cases


# --------------------------------------------------------------------------- the study


def run_study(
    net: Any,
    cases: Sequence[Case],
    profiles: Profiles,
    *,
    grid_forming: Sequence[GridFormingStorage] = (),
    customers: ArrayLikeInt | None = None,
    priority: ArrayLikeInt | None = None,
    max_loading_percent: float = 100.0,
    progress: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Simulate every case over every step of ``profiles`` (see the module doc).

    ``customers`` (n_load,): customers behind each load row (default 1); ``priority``
    (n_load,): shedding class, lower is shed first (default all 0). ``progress(done,
    total)`` is called after each step.
    """
    t0 = time.perf_counter()
    n_load, n_sgen, n_sto = len(net.load), len(net.sgen), len(net.storage)
    T, n_c = profiles.n_steps, len(cases)
    for name, arr, n in (("load_p_mw", profiles.load_p_mw, n_load), ("load_q_mvar", profiles.load_q_mvar, n_load),
                         ("sgen_p_mw", profiles.sgen_p_mw, n_sgen), ("storage_p_mw", profiles.storage_p_mw, n_sto)):
        if arr.shape != (T, n):
            raise ValueError(f"profiles.{name}: expected shape ({T}, {n}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"profiles.{name}: values must be finite")
    if n_c == 0:
        raise ValueError("cases: nothing to study")
    cust = np.ones(n_load) if customers is None else np.asarray(customers, dtype=np.float64)
    prio = np.zeros(n_load, dtype=np.int64) if priority is None else np.asarray(priority, dtype=np.int64)
    if cust.shape != (n_load,) or prio.shape != (n_load,):
        raise ValueError(f"customers / priority: expected {n_load} values (one per load row)")
    classes = np.unique(prio)
    rank = np.searchsorted(classes, prio)  # 0 = shed first
    n_levels = classes.size
    dt_h = profiles.step_s / 3600.0

    gf_units = [GridFormingUnit("storage", g.index, vm_pu=g.vm_pu, p_min_mw=-math.inf, p_max_mw=math.inf)
                for g in grid_forming]
    pf_plain = BatchPowerFlow(net)
    pf_gf = BatchPowerFlow(net, grid_forming=gf_units) if gf_units else pf_plain
    ga = pf_plain.arrays
    gf_pos = np.array([int(net.storage.index.get_loc(g.index)) for g in grid_forming], dtype=np.int64)
    e_mwh = np.array([g.energy_mwh for g in grid_forming], dtype=np.float64)
    p_max = np.array([g.power_mw for g in grid_forming], dtype=np.float64)
    eff = np.array([g.efficiency for g in grid_forming], dtype=np.float64)
    soc_min = np.array([g.soc_min for g in grid_forming], dtype=np.float64)
    soc = np.tile(np.array([g.soc_initial for g in grid_forming], dtype=np.float64), (n_c, 1))
    load_bus = net.bus.index.get_indexer(net.load.bus)
    gf_bus = net.bus.index.get_indexer(net.storage.bus.iloc[gf_pos]) if gf_units else np.zeros(0, np.int64)
    sgen_bus = net.bus.index.get_indexer(net.sgen.bus)
    n_br = ga.n_branch
    default_on = ga.br_default_in_service
    out_mask = np.zeros((n_c, n_br), dtype=bool)
    for c, case in enumerate(cases):
        out_mask[c, list(case.lines_out)] = True
        out_mask[c, [ga.n_line + i for i in case.trafos_out]] = True
    starts = np.array([cs.start_step for cs in cases])
    ends = np.array([T if cs.end_step is None else min(cs.end_step, T) for cs in cases])

    rows: dict[str, list[NDArray[Any]]] = {k: [] for k in (
        "case", "time_s", "demand_mw", "unserved_mw", "shed_class", "islanded",
        "island_collapsed", "gf_p_mw", "soc", "energized_buses", "vm_min_pu", "vm_max_pu",
        "max_loading_percent", "converged")}
    interrupted = np.zeros((n_c, n_load), dtype=bool)
    was_off = np.zeros((n_c, n_load), dtype=bool)
    events = np.zeros((n_c, n_load))
    ens_mwh = np.zeros(n_c)
    cust_min = np.zeros(n_c)
    vm_lo = np.full(n_c, np.inf)
    vm_hi = np.full(n_c, -np.inf)
    ld_hi = np.zeros(n_c)
    overloaded = np.zeros((n_c, n_br), dtype=bool)
    nonconv = np.zeros(n_c, dtype=np.int64)
    survival = np.full(n_c, np.nan)
    survived = np.zeros(n_c, dtype=bool)
    island_start = np.full(n_c, -1)
    collapsed_at = np.full(n_c, -1)

    fin = lambda a: np.where(np.isfinite(a), a, np.nan)  # noqa: E731
    for t in range(T):
        active = (starts <= t) & (t < ends)
        br_on = np.where(active[:, None], default_on & ~out_mask, default_on)
        demand = profiles.load_p_mw[t]
        base: dict[str, Any] = {
            "load_p_mw": np.tile(demand, (n_c, 1)), "load_q_mvar": np.tile(profiles.load_q_mvar[t], (n_c, 1)),
            "sgen_p_mw": np.tile(profiles.sgen_p_mw[t], (n_c, 1)),
            "storage_p_mw": np.tile(profiles.storage_p_mw[t], (n_c, 1)),
        }
        base["storage_p_mw"][:, gf_pos] = 0.0
        lines_on, trafos_on = br_on[:, : ga.n_line], br_on[:, ga.n_line:]
        res = pf_plain.solve(**base, line_in_service=lines_on, trafo_in_service=trafos_on)
        level = np.zeros(n_c, np.int64)
        isl = np.zeros((n_c, ga.n_bus), bool)
        collapsed = np.zeros(n_c, bool)
        gf_p = np.zeros((n_c, len(gf_units)))
        # cases where a grid-forming unit sits on a bus the upstream grid does not reach
        cand = np.flatnonzero(~res.energized[:, gf_bus].all(axis=1)) if gf_units else np.zeros(0, np.int64)
        if cand.size:
            g_level, g_isl, g_coll, g_p, g_res = _islanded(
                pf_gf, {k: v[cand] for k, v in base.items()}, lines_on[cand], trafos_on[cand],
                res_energized=res.energized[cand], soc=soc[cand], soc_min=soc_min, e_mwh=e_mwh,
                p_max=p_max, eff=eff, dt_h=dt_h, load_bus=load_bus, sgen_bus=sgen_bus, rank=rank,
                n_levels=n_levels,
            )
            keep = ~g_coll  # collapsed islands keep the plain result (de-energized)
            res = _copy_result(res)
            _assign_idx(res, g_res, cand[keep], keep)
            level[cand], isl[cand], collapsed[cand], gf_p[cand] = g_level, g_isl, g_coll, g_p
            # state of charge of the units acting as slack
            e_out = np.where(gf_p > 0, gf_p / eff, gf_p * eff) * dt_h
            soc = np.clip(soc - e_out / e_mwh, 0.0, 1.0)
            has_isl = np.zeros(n_c, bool)
            has_isl[cand] = g_isl.any(axis=1) | g_coll
            island_start[has_isl & (island_start < 0)] = t
            collapsed_at[collapsed & (collapsed_at < 0)] = t
        shed = isl[:, load_bus] & (rank[None, :] < level[:, None]) & ~collapsed[:, None]
        served = res.energized[:, load_bus] & ~shed & res.converged[:, None]
        dem = np.maximum(demand, 0.0)
        off = ~served & (dem > 0)[None, :]
        unserved = (off * dem).sum(axis=1)
        ens_mwh += unserved * dt_h
        cust_min += (off * cust).sum(axis=1) * profiles.step_s / 60.0
        interrupted |= off
        events += off & ~was_off
        was_off = off
        nonconv += ~res.converged
        live = res.energized & res.converged[:, None]
        vmin = np.where(live, res.vm_pu, np.inf).min(axis=1, initial=np.inf)
        vmax = np.where(live, res.vm_pu, -np.inf).max(axis=1, initial=-np.inf)
        vm_lo = np.minimum(vm_lo, vmin)
        vm_hi = np.maximum(vm_hi, vmax)
        loading = np.nan_to_num(np.concatenate([res.line_loading_percent, res.trafo_loading_percent], axis=1))
        ld_hi = np.maximum(ld_hi, loading.max(axis=1, initial=0.0))
        overloaded |= loading > max_loading_percent
        step_max = loading.max(axis=1, initial=0.0)
        for key, val in (
            ("case", np.arange(n_c)), ("time_s", np.full(n_c, t * profiles.step_s)),
            ("demand_mw", np.full(n_c, float(dem.sum()))), ("unserved_mw", unserved),
            ("shed_class", level), ("islanded", isl.any(axis=1)), ("island_collapsed", collapsed),
            ("gf_p_mw", gf_p.sum(axis=1)),
            ("soc", soc.mean(axis=1) if gf_units else np.full(n_c, np.nan)),
            ("energized_buses", res.energized.sum(axis=1)), ("vm_min_pu", fin(vmin)),
            ("vm_max_pu", fin(vmax)), ("max_loading_percent", step_max), ("converged", res.converged),
        ):
            rows[key].append(np.asarray(val).copy())
        if progress is not None:
            progress(t + 1, T)

    # island survival: from the first islanded step to the first collapse (or window end)
    for c in range(n_c):
        if island_start[c] < 0:
            continue
        stop = collapsed_at[c] if collapsed_at[c] >= 0 else ends[c]
        survived[c] = collapsed_at[c] < 0
        survival[c] = (stop - island_start[c]) * profiles.step_s / 60.0
    total_cust = float(cust.sum())
    n_int = (interrupted * cust).sum(axis=1)
    saifi = (events * cust).sum(axis=1) / total_cust
    saidi = cust_min / total_cust
    cases_tab = pa.table({
        "case": [cs.name for cs in cases],
        "kind": [cs.kind for cs in cases],
        "lines_out": [list(cs.lines_out) for cs in cases],
        "trafos_out": [list(cs.trafos_out) for cs in cases],
        "start_s": (starts * profiles.step_s).astype(np.int64),
        "end_s": (ends * profiles.step_s).astype(np.int64),
        "ens_kwh": ens_mwh * 1000.0,
        "customers_interrupted": n_int,
        "customer_minutes": cust_min,
        "saifi": saifi,
        "saidi_min": saidi,
        "island_survival_min": survival,
        "island_survived": survived,
        "vm_min_pu": fin(vm_lo),
        "vm_max_pu": fin(vm_hi),
        "overloaded_branches": overloaded.sum(axis=1).astype(np.int64),
        "max_loading_percent": ld_hi,
        "nonconverged_steps": nonconv,
    })
    steps = {k: np.concatenate(v) for k, v in rows.items()}
    steps_tab = pa.table({
        "case": pa.DictionaryArray.from_arrays(
            pa.array(steps.pop("case").astype(np.int32)), pa.array([cs.name for cs in cases])),
        **steps,
    })
    kpis = _kpis(cases, ens_mwh * 1000.0, n_int, saifi, saidi, survival, survived, fin(vm_lo),
                 fin(vm_hi), overloaded.sum(axis=1), nonconv)
    kpis["study_wall_time_s"] = round(time.perf_counter() - t0, 3)
    kpis["n_steps"] = float(T)
    return StudyResult(cases=cases_tab, steps=steps_tab, kpis=kpis)


ArrayLikeInt = Sequence[int] | NDArray[Any]


_FIELDS = ("vm_pu", "va_degree", "energized", "line_loading_percent", "line_p_from_mw",
           "line_q_from_mvar", "line_pl_mw", "trafo_loading_percent", "trafo_p_hv_mw",
           "trafo_q_hv_mvar", "trafo_pl_mw", "pl_mw", "ext_grid_p_mw", "ext_grid_q_mvar",
           "grid_forming_p_mw", "grid_forming_q_mvar", "converged", "iterations")


def _copy_result(res: PowerFlowResult) -> PowerFlowResult:
    return PowerFlowResult(**{f: np.array(getattr(res, f), copy=True) for f in _FIELDS})


def _assign_idx(dst: PowerFlowResult, src: PowerFlowResult, dst_rows: NDArray[Any], src_rows: BoolArray) -> None:
    for f in _FIELDS:
        getattr(dst, f)[dst_rows] = getattr(src, f)[src_rows]


def _islanded(
    pf: BatchPowerFlow, base: dict[str, Any], lines_on: BoolArray, trafos_on: BoolArray, *,
    res_energized: BoolArray, soc: FloatArray, soc_min: FloatArray, e_mwh: FloatArray,
    p_max: FloatArray, eff: FloatArray, dt_h: float, load_bus: NDArray[Any], sgen_bus: NDArray[Any],
    rank: NDArray[Any], n_levels: int,
) -> tuple[NDArray[Any], BoolArray, BoolArray, FloatArray, PowerFlowResult]:
    """One step of cases with grid-forming islands: curtail PV, shed by class, or collapse.

    Returns per case: shed level (classes shed), buses held by a grid-forming unit,
    collapsed flag, grid-forming powers (MW, supplied), and the accepted results.
    """
    n = lines_on.shape[0]
    hi = np.minimum(p_max, np.maximum(soc - soc_min, 0.0) * e_mwh * eff / dt_h)
    lo = -np.minimum(p_max, np.maximum(1.0 - soc, 0.0) * e_mwh / eff / dt_h)
    res = pf.solve(**base, line_in_service=lines_on, trafo_in_service=trafos_on)
    isl = res.energized & ~res_energized
    final = _copy_result(res)
    level = np.zeros(n, np.int64)
    pv_off = np.zeros(n, bool)
    collapsed = np.zeros(n, bool)
    todo = np.ones(n, bool)
    idx = np.arange(n)
    for _ in range(n_levels + 2):
        p = np.nan_to_num(res.grid_forming_p_mw, nan=np.inf)
        ok = res.converged & np.all((p >= lo[idx] - 1e-9) & (p <= hi[idx] + 1e-9), axis=1)
        _assign_idx(final, res, idx[ok], ok)
        todo[idx[ok]] = False
        bad = idx[~ok]
        over = np.any(p[~ok] < lo[bad], axis=1) & ~pv_off[bad]
        pv_off[bad[over]] = True
        level[bad[~over]] += 1
        collapsed |= todo & (level >= n_levels)  # only with every load shed: collapse
        todo &= level < n_levels
        idx = np.flatnonzero(todo)
        if idx.size == 0:
            break
        inj: dict[str, Any] = {k: v[idx].copy() for k, v in base.items()}
        shed = isl[idx][:, load_bus] & (rank[None, :] < level[idx, None])
        inj["load_p_mw"][shed] = 0.0
        inj["load_q_mvar"][shed] = 0.0
        inj["sgen_p_mw"][pv_off[idx, None] & isl[idx][:, sgen_bus]] = 0.0
        res = pf.solve(**inj, line_in_service=lines_on[idx], trafo_in_service=trafos_on[idx])
    collapsed |= todo
    gf_p = np.where(collapsed[:, None], 0.0, np.nan_to_num(final.grid_forming_p_mw))
    return level, isl, collapsed, gf_p, final


def _kpis(cases: Sequence[Case], ens: FloatArray, n_int: FloatArray, saifi: FloatArray, saidi: FloatArray,
          survival: FloatArray, survived: BoolArray, vm_lo: FloatArray, vm_hi: FloatArray,
          n_over: NDArray[Any], nonconv: NDArray[Any]) -> dict[str, float]:
    kinds = np.array([c.kind for c in cases])
    k: dict[str, float] = {"cases": float(len(cases))}
    for kind, tag in (("n-1", "n1"), ("n-k", "nk"), ("upstream_loss", "upstream")):
        m = kinds == kind
        k[f"{tag}_cases"] = float(m.sum())
        if not m.any():
            continue
        secure = (ens[m] <= 1e-9) & (n_over[m] == 0) & (nonconv[m] == 0)
        k[f"{tag}_secure_fraction"] = float(secure.mean())
        k[f"{tag}_ens_kwh_max"] = float(ens[m].max())
        k[f"{tag}_ens_kwh_mean"] = float(ens[m].mean())
        k[f"{tag}_customers_interrupted_max"] = float(n_int[m].max())
        k[f"{tag}_saifi_mean"] = float(saifi[m].mean())
        k[f"{tag}_saidi_min_mean"] = float(saidi[m].mean())
        k[f"{tag}_overloaded_branches_max"] = float(n_over[m].max())
    up = kinds == "upstream_loss"
    if up.any():
        s = survival[up]
        k["upstream_island_survival_min_min"] = float(np.nanmin(s)) if np.isfinite(s).any() else float("nan")
        k["upstream_islands_survived"] = float(survived[up].sum())
    k["vm_min_pu"] = float(np.nanmin(vm_lo)) if np.isfinite(vm_lo).any() else float("nan")
    k["vm_max_pu"] = float(np.nanmax(vm_hi)) if np.isfinite(vm_hi).any() else float("nan")
    k["ens_kwh_total"] = float(ens.sum())
    k["nonconverged_steps"] = float(nonconv.sum())
    return k
