"""Faults and repairs as SimPy processes, and the feeder's state they leave per interval.

:func:`fault_plan` runs one :class:`simpy.Environment` over the run (clock: seconds since the
scenario start) with one process per fault source:

* a line or transformer (``faults.lines`` / ``faults.transformers``): at each fixed time and,
  with a failure rate, after exponential times to failure, it faults; protection isolates it
  at once (the branch opens, what lies behind it is de-energized); a repair time is drawn
  (:class:`twin.faults.spec.RepairSpec`) and the branch recloses when it is over. With
  ``reconfiguration.allowed``, ``switching_s`` after the fault the first normally-open tie
  that joins a de-energized part to a supplied one closes; it opens again at the repair;
* the upstream grid (``faults.upstream``): lost over a window (every ext_grid out);
* devices (``faults.devices``): a PV inverter trips or an EV charger fails until repaired.

Every process draws from its own child of the generator passed in (the run's), so the draws
do not depend on the scheduling order; SimPy orders simultaneous events by (time,
priority, insertion), so the event list is deterministic.

The state of market interval ``k`` is the state at its midpoint, ``(k + 0.5) * interval_s``
(a fault shorter than half an interval may fall between two midpoints: it is in the events
table but changes no interval). :class:`FaultState` is that state; :func:`islands` turns it
into electrical islands: each connected part of the feeder is supplied by the upstream grid
(island 0), held by a grid-forming battery (islands 1, 2, ...) or de-energized (-1).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["FaultEvent", "FaultPlan", "FaultState", "Islands", "add_ties", "books_of", "fault_plan",
           "interruption_rows", "islands", "net_problems"]

_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One thing that happened: ``kind`` fault | repair | isolate | tie_close | tie_open |
    upstream_loss | upstream_restore | device_fault | device_repair."""

    time_s: float
    kind: str
    element_kind: str  # line | trafo | tie | upstream | inverter | charger
    element: int
    fault_id: int
    fault_kind: str = ""  # line | trafo | upstream | inverter_trip | charger_outage


@dataclass(frozen=True, slots=True)
class FaultState:
    """The feeder during one interval (row positions in ``net.line`` / ``net.trafo``)."""

    lines_out: tuple[int, ...] = ()
    trafos_out: tuple[int, ...] = ()
    ties_closed: tuple[int, ...] = ()  # line rows of closed ties
    upstream_lost: bool = False
    inverters_out: tuple[int, ...] = ()  # household indices
    chargers_out: tuple[int, ...] = ()  # EV indices

    @property
    def topology_normal(self) -> bool:
        return not (self.lines_out or self.trafos_out or self.ties_closed or self.upstream_lost)

    @property
    def normal(self) -> bool:
        return self.topology_normal and not (self.inverters_out or self.chargers_out)

    def to_msg(self) -> dict[str, Any]:
        return {"lines_out": list(self.lines_out), "trafos_out": list(self.trafos_out),
                "ties_closed": list(self.ties_closed), "upstream_lost": self.upstream_lost,
                "inverters_out": list(self.inverters_out), "chargers_out": list(self.chargers_out)}

    @classmethod
    def from_msg(cls, m: dict[str, Any]) -> FaultState:
        return cls(lines_out=tuple(m["lines_out"]), trafos_out=tuple(m["trafos_out"]),
                   ties_closed=tuple(m["ties_closed"]), upstream_lost=bool(m["upstream_lost"]),
                   inverters_out=tuple(m["inverters_out"]), chargers_out=tuple(m["chargers_out"]))


@dataclass(frozen=True, slots=True)
class Outage:
    """One fault from its start to its repair (for the mean time to repair)."""

    fault_id: int
    fault_kind: str
    element: int
    start_s: float
    repair_s: float


@dataclass
class FaultPlan:
    """The events of the run, the state of each interval and every outage's duration."""

    events: list[FaultEvent]
    states: list[FaultState]
    outages: list[Outage]
    tie_rows: tuple[int, ...] = ()
    #: (time_s, state from then on) after every event, in time order
    timeline: list[tuple[float, FaultState]] = field(default_factory=list)
    #: ``interruptions`` rows (:func:`interruption_rows`), filled by the run's set-up
    interruptions: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- the net


def net_problems(spec: Any, net: Any) -> list[tuple[str, str]]:
    """Fault targets and ties that the built feeder does not have, with their field paths."""
    out: list[tuple[str, str]] = []
    for name, items, table in (("lines", spec.lines, net.line), ("transformers", spec.transformers, net.trafo)):
        for i, b in enumerate(items):
            if b.element not in table.index:
                out.append((f"faults.{name}[{i}].element", f"no {(table is net.line and 'line') or 'trafo'} "
                            f"{b.element} in the feeder (it has {len(table)}: "
                            f"{_span(table.index)})"))
    for i, t in enumerate(spec.reconfiguration.ties):
        for key in ("from_bus", "to_bus"):
            if getattr(t, key) not in net.bus.index:
                out.append((f"faults.reconfiguration.ties[{i}].{key}",
                            f"no bus {getattr(t, key)} in the feeder ({_span(net.bus.index)})"))
        if t.like_line not in net.line.index:
            out.append((f"faults.reconfiguration.ties[{i}].like_line",
                        f"no line {t.like_line} in the feeder ({_span(net.line.index)})"))
        if t.from_bus == t.to_bus:
            out.append((f"faults.reconfiguration.ties[{i}]", "a tie needs two different buses"))
    if spec.reconfiguration.allowed and not spec.reconfiguration.ties:
        out.append(("faults.reconfiguration.ties", "reconfiguration is allowed but the feeder has "
                    "no normally-open tie: name one (from_bus, to_bus, like_line)"))
    return out


def _span(index: Any) -> str:
    vals = sorted(int(v) for v in index)
    return f"{vals[0]}..{vals[-1]}" if vals else "none"


def add_ties(net: Any, ties: Sequence[Any]) -> tuple[int, ...]:
    """Append each tie as an out-of-service line (normally open); return their row positions."""
    rows = []
    for t in ties:
        proto = net.line.loc[t.like_line].copy()
        proto["from_bus"], proto["to_bus"] = t.from_bus, t.to_bus
        proto["length_km"], proto["in_service"] = t.length_km, False
        proto["name"] = f"tie {t.from_bus}-{t.to_bus}"
        idx = int(net.line.index.max()) + 1
        net.line.loc[idx] = proto
        rows.append(int(net.line.index.get_loc(idx)))
    return tuple(rows)


@dataclass(frozen=True, eq=False)
class _Graph:
    """The feeder's buses and branches as positions, for connectivity."""

    n_bus: int
    line_ends: np.ndarray  # (n_line, 2) bus positions
    trafo_ends: np.ndarray
    line_on: np.ndarray  # normally in service (ties: False)
    trafo_on: np.ndarray
    bus_links: np.ndarray  # (m, 2) closed bus-bus switches
    sources: np.ndarray  # ext_grid bus positions
    up_lines: np.ndarray  # branches between an ext_grid bus and the feeder (cut when it is lost)
    up_trafos: np.ndarray

    @classmethod
    def of(cls, net: Any) -> _Graph:
        pos = {int(b): i for i, b in enumerate(net.bus.index)}
        le = np.array([[pos[int(f)], pos[int(t)]] for f, t in zip(net.line.from_bus, net.line.to_bus,
                                                                    strict=True)], dtype=np.int64).reshape(-1, 2)
        te = np.array([[pos[int(h)], pos[int(lv)]] for h, lv in zip(net.trafo.hv_bus, net.trafo.lv_bus,
                                                                     strict=True)], dtype=np.int64).reshape(-1, 2)
        line_on = net.line.in_service.to_numpy(dtype=bool).copy()
        trafo_on = net.trafo.in_service.to_numpy(dtype=bool).copy()
        links = []
        sw = net.switch
        for b, el, et, closed in zip(sw.bus, sw.element, sw.et, sw.closed, strict=True):
            if et == "l" and not closed:
                line_on[net.line.index.get_loc(el)] = False
            elif et == "t" and not closed:
                trafo_on[net.trafo.index.get_loc(el)] = False
            elif et == "b" and closed:
                links.append((pos[int(b)], pos[int(el)]))
        eg = net.ext_grid[net.ext_grid.in_service.astype(bool)]
        src = np.array([pos[int(b)] for b in eg.bus], dtype=np.int64)
        return cls(n_bus=len(pos), line_ends=le, trafo_ends=te, line_on=line_on, trafo_on=trafo_on,
                   bus_links=np.array(links, dtype=np.int64).reshape(-1, 2), sources=src,
                   up_lines=np.flatnonzero(np.isin(le, src).sum(axis=1) == 1),
                   up_trafos=np.flatnonzero(np.isin(te, src).sum(axis=1) == 1))

    def components(self, state: FaultState) -> np.ndarray:
        line_on = self.line_on.copy()
        line_on[list(state.lines_out)] = False
        line_on[list(state.ties_closed)] = True
        trafo_on = self.trafo_on.copy()
        trafo_on[list(state.trafos_out)] = False
        if state.upstream_lost:  # as the power flow: the ext_grid's branches open
            line_on[self.up_lines] = False
            trafo_on[self.up_trafos] = False
        e = np.concatenate([self.line_ends[line_on], self.trafo_ends[trafo_on], self.bus_links])
        g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(self.n_bus, self.n_bus))
        return connected_components(g, directed=False)[1]


@dataclass(frozen=True, eq=False)
class Islands:
    """``bus_island`` per bus position: 0 supplied by the upstream grid, 1.. held by a
    grid-forming unit (``gf_island`` per unit, -1 when it stands in the grid's part or
    alone in a dead part), -1 de-energized."""

    bus_island: np.ndarray
    gf_island: np.ndarray

    @property
    def n_islands(self) -> int:
        return int(self.bus_island.max(initial=0))


def islands(graph: _Graph, state: FaultState, gf_bus: np.ndarray) -> Islands:
    """The electrical islands of ``state`` (grid-forming units at bus positions ``gf_bus``)."""
    comp = graph.components(state)
    out = np.full(graph.n_bus, -1, dtype=np.int64)
    if not state.upstream_lost and graph.sources.size:
        out[np.isin(comp, comp[graph.sources])] = 0
    gf_island = np.full(len(gf_bus), -1, dtype=np.int64)
    nxt = 1
    for u in np.argsort(gf_bus, kind="stable"):
        c = comp[gf_bus[u]]
        here = comp == c
        if out[gf_bus[u]] == 0:
            continue
        if out[gf_bus[u]] < 0:
            out[here] = nxt
            nxt += 1
        gf_island[u] = out[gf_bus[u]]
    return Islands(bus_island=out, gf_island=gf_island)


def books_of(isl: Islands, device_bus: dict[int, int], *, market: str) -> dict[int, int]:
    """Device id -> market book under ``isl``: 0 for the grid-connected part, the island's
    number for an island (only with ``market`` ``per_island``); no book without supply."""
    out: dict[int, int] = {}
    for d, pos in device_bus.items():
        b = int(isl.bus_island[pos])
        if b == 0 or (b > 0 and market == "per_island"):
            out[d] = b
    return out


# --------------------------------------------------------------------------- SimPy


def _repair_s(rng: np.random.Generator, r: Any) -> float:
    if r.distribution == "fixed":
        return float(r.mean_s)
    if r.distribution == "exponential":
        return float(rng.exponential(r.mean_s))
    return float(r.mean_s * np.exp(r.sigma * rng.standard_normal()))


def fault_plan(spec: Any, *, net: Any, rng: np.random.Generator, duration_s: int, interval_s: int,
               n_households: int, n_evs: int, gf_bus: np.ndarray,
               tie_rows: Sequence[int] = ()) -> FaultPlan:
    """Run the fault processes of ``spec`` (a ``FaultsSpec``) over ``duration_s``."""
    graph = _Graph.of(net)
    env = simpy.Environment()
    timeline: list[tuple[float, FaultState]] = []

    class _Log(list):  # type: ignore[type-arg]
        def append(self, ev: FaultEvent) -> None:  # every event: the state from then on
            super().append(ev)
            timeline.append((float(env.now), state_now()))

    events: list[FaultEvent] = _Log()
    outages: list[Outage] = []
    down_line: dict[int, int] = {}
    down_trafo: dict[int, int] = {}
    down_inv: dict[int, int] = {}
    down_chg: dict[int, int] = {}
    upstream = [0]
    ties_closed: dict[int, int] = {}  # tie row -> fault id that closed it
    ids = iter(range(1, 1 << 30))
    reconf = spec.reconfiguration

    def state_now() -> FaultState:
        return FaultState(
            lines_out=tuple(sorted(r for r, n in down_line.items() if n)),
            trafos_out=tuple(sorted(r for r, n in down_trafo.items() if n)),
            ties_closed=tuple(sorted(ties_closed)), upstream_lost=upstream[0] > 0,
            inverters_out=tuple(sorted(i for i, n in down_inv.items() if n)),
            chargers_out=tuple(sorted(i for i, n in down_chg.items() if n)))

    def close_tie(fid: int) -> None:
        st = state_now()
        comp = graph.components(st)
        live = islands(graph, st, gf_bus).bus_island >= 0
        for row in tie_rows:
            if row in ties_closed:
                continue
            a, b = graph.line_ends[row]
            if comp[a] != comp[b] and live[a] != live[b]:  # joins a dead part to a live one
                ties_closed[row] = fid
                events.append(FaultEvent(env.now, "tie_close", "tie", row, fid))
                return

    def next_fault(times: Any, timing: Any, gen: np.random.Generator) -> tuple[float, float] | None:
        """Wait until the next fault (fixed ``times`` or the failure rate) and its repair
        time, drawn in that order; None when no further fault starts within the run."""
        if times is not None:
            t = next(times, None)
            if t is None:
                return None
            wait = max(t - env.now, 0.0)
        else:
            wait = float(gen.exponential(_DAY_S / timing.rate_per_day))
        rep = _repair_s(gen, timing.repair)
        return None if env.now + wait >= duration_s else (wait, rep)

    def branch(kind: str, row: int, label: int, timing: Any, gen: np.random.Generator,
               fixed: bool) -> Generator[simpy.Event, Any, None]:
        down = down_line if kind == "line" else down_trafo
        times = iter(sorted(timing.at_s)) if fixed else None
        while (nxt := next_fault(times, timing, gen)) is not None:
            wait, rep = nxt
            yield env.timeout(wait)
            fid = next(ids)
            down[row] = down.get(row, 0) + 1
            events.append(FaultEvent(env.now, "fault", kind, label, fid, kind))
            events.append(FaultEvent(env.now, "isolate", kind, label, fid, kind))
            start = env.now
            if reconf.allowed and tie_rows:
                yield env.timeout(min(reconf.switching_s, rep))
                if env.now - start < rep:
                    close_tie(fid)
                yield env.timeout(rep - (env.now - start))
            else:
                yield env.timeout(rep)
            for r in [r for r, f in ties_closed.items() if f == fid]:
                del ties_closed[r]
                events.append(FaultEvent(env.now, "tie_open", "tie", r, fid))
            down[row] -= 1
            events.append(FaultEvent(env.now, "repair", kind, label, fid, kind))
            outages.append(Outage(fid, kind, label, start, env.now - start))

    def upstream_loss(u: Any) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(u.start_s)
        fid = next(ids)
        upstream[0] += 1
        events.append(FaultEvent(env.now, "upstream_loss", "upstream", 0, fid, "upstream"))
        yield env.timeout(u.duration_s)
        upstream[0] -= 1
        events.append(FaultEvent(env.now, "upstream_restore", "upstream", 0, fid, "upstream"))
        outages.append(Outage(fid, "upstream", 0, float(u.start_s), float(u.duration_s)))

    def device(kind: str, index: int, timing: Any, gen: np.random.Generator,
               fixed: bool) -> Generator[simpy.Event, Any, None]:
        down = down_inv if kind == "inverter_trip" else down_chg
        el = "inverter" if kind == "inverter_trip" else "charger"
        times = iter(sorted(timing.at_s)) if fixed else None
        while (nxt := next_fault(times, timing, gen)) is not None:
            wait, rep = nxt
            yield env.timeout(wait)
            fid = next(ids)
            down[index] = down.get(index, 0) + 1
            events.append(FaultEvent(env.now, "device_fault", el, index, fid, kind))
            start = env.now
            yield env.timeout(rep)
            down[index] -= 1
            events.append(FaultEvent(env.now, "device_repair", el, index, fid, kind))
            outages.append(Outage(fid, kind, index, start, rep))

    # one child generator per process, in the spec's order: draws independent of scheduling
    procs: list[tuple[Any, tuple[Any, ...]]] = []
    for kind, items, table in (("line", spec.lines, net.line), ("trafo", spec.transformers, net.trafo)):
        for b in items:
            row = int(table.index.get_loc(b.element))
            for fixed in (True, False):
                if (b.at_s if fixed else b.rate_per_day):
                    procs.append((branch, (kind, row, int(b.element), b, fixed)))
    for d in spec.devices:
        n = n_households if d.kind == "inverter_trip" else n_evs
        targets = range(n) if d.target == "all" else [int(d.target.rsplit("_", 1)[1])]
        for i in targets:
            for fixed in (True, False):
                if (d.at_s if fixed else d.rate_per_day):
                    procs.append((device, (d.kind, i, d, fixed)))
    gens = rng.spawn(len(procs)) if procs else []
    for (fn, args), gen in zip(procs, gens, strict=True):
        env.process(fn(*args[:-1], gen, args[-1]))
    for u in spec.upstream:
        env.process(upstream_loss(u))
    # sample the state at each interval's midpoint (a process of its own, lowest priority)
    n = duration_s // interval_s
    states: list[FaultState] = []

    def sampler() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(interval_s / 2)
        for _ in range(n):
            states.append(state_now())
            yield env.timeout(interval_s)

    env.process(sampler())
    env.run()
    ordered = sorted(events, key=lambda e: e.time_s)  # stable: SimPy's order within a time
    return FaultPlan(events=[e for e in ordered if e.time_s < duration_s], states=states[:n],
                     outages=sorted(outages, key=lambda o: (o.start_s, o.fault_id)),
                     tie_rows=tuple(tie_rows),
                     timeline=sorted(timeline, key=lambda x: x[0]))


def interruption_rows(plan: FaultPlan, *, graph: _Graph, gf_bus: np.ndarray, customer_bus: np.ndarray,
                      demand_mw: np.ndarray, interval_s: int, duration_s: int) -> list[dict[str, Any]]:
    """Customers without supply between consecutive fault events, in exact times.

    ``customer_bus``: bus position of each customer; ``demand_mw`` (n_customers, n_intervals)
    their demand. One row per stretch of time with a changed topology: customers
    de-energized (their bus in no island), new interruptions (customers who had supply just
    before), their energy not served over the stretch (Wh; demand of each interval it
    overlaps, by overlap). Islands held by a battery are not counted here: shedding inside
    them is decided per interval with the island's balance (``outages`` rows).
    """
    rows: list[dict[str, Any]] = []
    prev = np.zeros(customer_bus.size, dtype=bool)
    points: list[tuple[float, FaultState]] = []
    for t, st in plan.timeline:
        if t >= duration_s:
            break
        if points and points[-1][0] == t:
            points[-1] = (t, st)
        else:
            points.append((t, st))
    cache: dict[FaultState, np.ndarray] = {}
    for i, (t0, st) in enumerate(points):
        t1 = points[i + 1][0] if i + 1 < len(points) else float(duration_s)
        if st not in cache:
            cache[st] = islands(graph, st, gf_bus).bus_island
        b = cache[st]
        dead = b[customer_bus] < 0
        if dead.any() or prev.any():
            k0, k1 = int(t0 // interval_s), int(min(np.ceil(t1 / interval_s), demand_mw.shape[1]))
            ens = 0.0
            for k in range(k0, k1):
                lap = min(t1, (k + 1) * interval_s) - max(t0, k * interval_s)
                if lap > 0:
                    ens += float(np.clip(demand_mw[dead, k], 0.0, None).sum()) * lap / 3600.0 * 1e6
            rows.append({"time_s": t0, "end_s": t1, "interval": int(t0 // interval_s),
                         "customers_total": int(customer_bus.size),
                         "customers_off": int(dead.sum()), "new_interruptions": int((dead & ~prev).sum()),
                         "ens_wh": ens, "dead_buses": int((b < 0).sum())})
        prev = dead
    return rows
