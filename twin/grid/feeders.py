"""Feeder builders: a pandapower net plus the element map the agents need.

:func:`build_feeder` turns a :class:`~twin.scenario.Scenario` into a :class:`Feeder`:

* ``grid.kind`` selects the net: ``"simbench"`` (``simbench.get_simbench_net(code)``, real
  German grids with a year of 15-min profiles), ``"cigre_lv"`` or ``"case33bw"``
  (pandapower's built-in nets, no profiles).
* **Households.** SimBench: a seeded choice of the residential loads (profile ``H*``;
  all loads if the grid has none) become households, keeping their own load row and
  SimBench profile; if there are more households than such loads, the extra households are
  new ``net.load`` rows at buses of residential loads with a seeded residential profile and
  rated ``p_mw``. Other loads stay *background* loads with their own profiles.
  CIGRE LV / case33bw: every household is a new ``net.load`` row at a seeded load bus
  (residential ``Load R*`` buses first for CIGRE), with synthetic profiles; the original
  (aggregated) loads stay background with a smooth deterministic daily shape, peak = rated.
* **PV.** ``pv.share`` of the households get one new ``net.sgen`` row (type ``"PV"``) at
  their bus, kWp drawn uniformly in [kwp_min, kwp_max] (0.1 kWp steps); per-unit output
  from SimBench PV profiles or the synthetic generator. Existing sgens stay background.
* **Home batteries.** ``battery.share`` of the PV households get one new ``net.storage``
  row (type ``"home_battery"``) at their bus, behind the household meter.
* **EVs.** One new ``net.load`` row (type ``"ev"``) per EV at its owning household's bus
  (owners drawn without replacement while EVs <= households). EVs only charge (no V2G),
  so a load row is the natural element.
* **Community batteries.** One new ``net.storage`` row (type ``"community_battery"``)
  each, at a seeded household bus.

All ``*_row`` arrays are *positional* rows of their table (the order of
``apply_injections`` arrays); ``*_bus`` arrays are ``net.bus.index`` labels. ``-1`` marks
"none". Profiles are interval averages over the scenario window, shape (n, n_intervals).
The returned net has no ``profiles`` table (the sliced profiles live in the Feeder), which
keeps copies cheap. Randomness comes from the ``rng`` passed in; by default a generator
seeded with ``[scenario.seed, 1]`` (a stream distinct from the model's own).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandapower as pp
import pandapower.networks as pn

from twin.grid.phase_spec import PHASE_ABC, assign_phases
from twin.grid.profiles import (
    aggregate_load_shape,
    shared_window_average,
    simbench_offset_s,
    synthetic_household_load_p_mw,
    synthetic_pv_pu,
)
from twin.grid.zero_sequence import fill_zero_sequence

if TYPE_CHECKING:  # the scenario spec imports the grid (DER specs), not the other way round
    from twin.scenario import Scenario

__all__ = ["Feeder", "build_feeder"]

_I64 = np.int64


@dataclass(frozen=True, slots=True, eq=False)
class Feeder:
    """A built feeder: the pandapower net and the element map of every agent."""

    net: Any = field(repr=False)
    kind: str
    name: str
    interval_s: int
    n_intervals: int
    #: where the household profiles come from ("simbench" or "synthetic")
    profile_source: Literal["simbench", "synthetic"]
    # households (n_households,)
    household_bus: np.ndarray
    household_load_row: np.ndarray
    household_sgen_row: np.ndarray  # -1: no PV
    household_pv_kwp: np.ndarray  # 0.0: no PV
    household_storage_row: np.ndarray  # -1: no home battery
    # household base profiles (n_households, n_intervals)
    household_load_p_mw: np.ndarray = field(repr=False)
    household_load_q_mvar: np.ndarray = field(repr=False)
    household_pv_pu: np.ndarray = field(repr=False)  # per unit of kWp, in [0, 1]
    # EVs (n_evs,)
    ev_household: np.ndarray
    ev_bus: np.ndarray
    ev_load_row: np.ndarray
    # community batteries (n_storage,)
    storage_bus: np.ndarray
    storage_row: np.ndarray
    # background elements with their own profiles
    background_load_row: np.ndarray
    background_load_p_mw: np.ndarray = field(repr=False)
    background_load_q_mvar: np.ndarray = field(repr=False)
    background_sgen_row: np.ndarray
    background_sgen_p_mw: np.ndarray = field(repr=False)
    #: 3: solved per phase (grid.phases); element_phase maps "load" / "sgen" / "storage" to
    #: each row's phase code (0/1/2 = a/b/c, 3 = abc; twin/grid/phase_spec.py), None if 1
    phases: int = 1
    element_phase: dict[str, np.ndarray] | None = field(default=None, repr=False)
    #: grid.kind "opendss": the deck's phase-frame feeder (solved with its own loads; the net
    #: is then only the element map, twin/grid/opendss_grid.py); None otherwise
    phase_network: Any = field(default=None, repr=False)
    #: grid.opendss.regulators "deck": the deck's RegControls (twin/grid/regcontrol3ph.py)
    phase_regulators: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def n_households(self) -> int:
        return int(self.household_bus.size)

    @property
    def n_evs(self) -> int:
        return int(self.ev_bus.size)

    @property
    def n_storage(self) -> int:
        return int(self.storage_bus.size)

    @property
    def n_load(self) -> int:
        return len(self.net.load)

    @property
    def n_sgen(self) -> int:
        return len(self.net.sgen)

    @property
    def n_storage_rows(self) -> int:
        return len(self.net.storage)


@lru_cache(maxsize=4)
def _simbench_net(code: str) -> Any:
    """Load a SimBench net once per process (a pure function of ``code``; ~4 s to build an
    LV grid and ~30 s an ``*-all-*`` town grid, ~50 ms from the disk cache of
    :mod:`twin.grid.simbench_cache`)."""
    from twin.grid.simbench_cache import simbench_net

    try:
        return simbench_net(code)
    except Exception as exc:  # simbench raises plain errors for unknown codes
        raise ValueError(f"grid.simbench_code: cannot load SimBench grid {code!r}: {exc}") from exc


@lru_cache(maxsize=1)
def _ieee_eu_lv_net() -> Any:
    """pandapower's IEEE European LV feeder (906 buses, 55 single-phase loads), loads as rows.

    Its asymmetric loads become zero ``net.load`` rows at their buses (the households'
    buses; the balanced engine cannot hold asymmetric loads), in the deck's order.
    """
    net = pn.ieee_european_lv_asymmetric("on_peak_566")
    asym = net.asymmetric_load
    pp.create_loads(net, buses=asym.bus.to_numpy(), p_mw=0.0, q_mvar=0.0, name=list(asym.name),
                    type="household")
    net.asymmetric_load.drop(net.asymmetric_load.index, inplace=True)
    return net


@lru_cache(maxsize=1)
def _cigre_lv_net() -> Any:
    """pandapower's CIGRE LV feeder, built once per process (building it takes ~1 s, a copy
    ~30 ms)."""
    return pn.create_cigre_network_lv()


@lru_cache(maxsize=1)
def _case33bw_net() -> Any:
    """pandapower's case33bw, loaded once per process (it is read from a file)."""
    return pn.case33bw()


def _base_net(scenario: Scenario) -> Any:
    kind = scenario.grid.kind
    if kind == "simbench":
        return copy.deepcopy(_simbench_net(scenario.grid.simbench_code))
    if kind == "cigre_lv":
        return copy.deepcopy(_cigre_lv_net())
    if kind == "case33bw":
        return copy.deepcopy(_case33bw_net())
    if kind == "ieee_eu_lv":
        return copy.deepcopy(_ieee_eu_lv_net())
    if kind == "opendss":
        from twin.grid.opendss_grid import deck_feeder, element_map_net

        if scenario.grid.opendss is None:
            raise ValueError("grid.opendss: grid.kind opendss needs a deck")
        return element_map_net(deck_feeder(scenario.grid.opendss))
    raise ValueError(f"grid.kind: unknown feeder kind {kind!r}")


def _pos(index: Any, labels: Any) -> np.ndarray:
    return np.asarray(index.get_indexer(labels), dtype=_I64)


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def _element_phases(scenario: Scenario, *, net: Any, rng: np.random.Generator, hh_labels: list[int],
                    pv_idx: np.ndarray, sgen_label: np.ndarray, bat_idx: np.ndarray,
                    hh_storage_label: np.ndarray, ev_hh: np.ndarray, ev_label: np.ndarray,
                    cs_label: np.ndarray, network: Any = None) -> dict[str, np.ndarray]:
    """Phase code of every load / sgen / storage row (background elements: abc)."""
    hh_mask = cs_mask = None
    if network is not None:  # an OpenDSS deck: buses may lack phases
        pos = {int(b): k for k, b in enumerate(net.bus.index)}
        has = network.bus_phases
        hh_mask = has[[pos[int(net.load.at[lab, "bus"])] for lab in hh_labels]]
        cs_mask = has[[pos[int(net.storage.at[lab, "bus"])] for lab in cs_label]].reshape(-1, 3)
    ph = assign_phases(scenario.grid.phase_connection, rng=rng, n_households=len(hh_labels),
                       pv_household=np.asarray(pv_idx, _I64), battery_household=np.asarray(bat_idx, _I64),
                       ev_household=ev_hh, n_storage=cs_label.size, household_phases=hh_mask,
                       storage_phases=cs_mask)
    out = {t: np.full(len(net[t]), PHASE_ABC, dtype=_I64) for t in ("load", "sgen", "storage")}
    out["load"][_pos(net.load.index, hh_labels)] = ph["household"]
    if ev_label.size:
        out["load"][_pos(net.load.index, ev_label)] = ph["ev"]
    if len(pv_idx):
        out["sgen"][_pos(net.sgen.index, sgen_label[pv_idx])] = ph["pv"]
    if len(bat_idx):
        out["storage"][_pos(net.storage.index, hh_storage_label[bat_idx])] = ph["battery"]
    if cs_label.size:
        out["storage"][_pos(net.storage.index, cs_label)] = ph["community_storage"]
    for a in out.values():
        a.setflags(write=False)
    return out


def build_feeder(scenario: Scenario, *, rng: np.random.Generator | None = None) -> Feeder:
    """Build the pandapower net and the element map of ``scenario`` (deterministic)."""
    if rng is None:
        rng = np.random.default_rng([scenario.seed, 1])
    net = _base_net(scenario)
    if scenario.grid.phases == 3 and scenario.grid.zero_sequence is not None:
        fill_zero_sequence(net, scenario.grid.zero_sequence)
    hh_spec = scenario.agents.households
    n_hh = hh_spec.count
    interval_s = scenario.market.interval_s
    window = {
        "offset_s": simbench_offset_s(scenario.start),
        "duration_s": scenario.duration_s,
        "interval_s": interval_s,
    }
    n_int = scenario.n_intervals
    is_simbench = scenario.grid.kind == "simbench" and "profiles" in net
    use_sb_profiles = is_simbench and hh_spec.profiles == "simbench"

    load = net.load
    orig_load_labels = list(load.index)
    if is_simbench:
        profile_col = load["profile"].astype(str)
        residential = [lab for lab in orig_load_labels if profile_col[lab].startswith("H")]
    elif scenario.grid.kind in ("ieee_eu_lv", "opendss"):  # households replace the deck's (zero) loads
        residential = orig_load_labels
    elif scenario.grid.kind == "cigre_lv":
        residential = [lab for lab in orig_load_labels if str(load.at[lab, "name"]).startswith("Load R")]
    else:
        residential = []
    candidates = residential or orig_load_labels
    if not candidates:
        raise ValueError(f"grid: feeder {scenario.grid.kind!r} has no loads to attach households to")

    # --- households: (load label, bus, simbench profile name or None, rated p/q)
    hh_labels: list[int] = []
    hh_profile: list[str | None] = []
    if is_simbench:
        n_reuse = min(n_hh, len(candidates))
        chosen = rng.choice(len(candidates), size=n_reuse, replace=False)
        for i in np.sort(chosen):
            lab = candidates[int(i)]
            hh_labels.append(lab)
            hh_profile.append(str(load.at[lab, "profile"]))
        n_extra = n_hh - n_reuse
    else:
        n_extra = n_hh
    if n_extra:
        cand_bus = np.array([int(load.at[lab, "bus"]) for lab in candidates])
        order = rng.permutation(len(candidates))
        picks = order[np.arange(n_extra) % len(candidates)]
        if is_simbench:
            res_profiles = sorted({str(load.at[lab, "profile"]) for lab in candidates})
            prof_pick = rng.integers(len(res_profiles), size=n_extra)
            p_pick = rng.integers(len(candidates), size=n_extra)
        buses = cand_bus[picks].astype(_I64)
        if is_simbench:
            srcs = [candidates[int(i)] for i in p_pick]
            p_new = load.loc[srcs, "p_mw"].to_numpy(float)
            q_new = load.loc[srcs, "q_mvar"].to_numpy(float)
            profs: list[str | None] = [res_profiles[int(i)] for i in prof_pick]
        else:
            p_new, q_new, profs = np.zeros(n_extra), np.zeros(n_extra), [None] * n_extra
        # one bulk insert (pandapower's per-element create is ~10 ms each)
        labs = pp.create_loads(
            net, buses=buses, p_mw=p_new, q_mvar=q_new,
            name=[f"household {len(hh_labels) + j}" for j in range(n_extra)], type="household",
        )
        if is_simbench:
            net.load.loc[labs, "profile"] = profs
        hh_labels.extend(int(lab) for lab in labs)
        hh_profile.extend(profs)
    load = net.load
    hh_bus = np.array([int(load.at[lab, "bus"]) for lab in hh_labels], dtype=_I64)

    # --- household profiles
    if use_sb_profiles:
        # one window average per distinct SimBench profile, indexed per household (no
        # full-year copy per household)
        lp = net.profiles["load"]
        rated_p = load.loc[hh_labels, "p_mw"].to_numpy(float)[:, None]
        rated_q = load.loc[hh_labels, "q_mvar"].to_numpy(float)[:, None]
        hh_p = shared_window_average(lp, [f"{p}_pload" for p in hh_profile], **window) * rated_p
        hh_q = shared_window_average(lp, [f"{p}_qload" for p in hh_profile], **window) * rated_q
        profile_source: Literal["simbench", "synthetic"] = "simbench"
    else:
        hh_p, hh_q = synthetic_household_load_p_mw(
            rng, n=n_hh, start=scenario.start, duration_s=scenario.duration_s,
            interval_s=interval_s, annual_kwh=hh_spec.annual_kwh,
        )
        profile_source = "synthetic"

    # --- background loads and sgens (everything that exists before we add agents)
    hh_set = set(hh_labels)
    bg_load_labels = [lab for lab in orig_load_labels if lab not in hh_set]
    bg_sgen_labels = list(net.sgen.index)
    if is_simbench:
        lp = net.profiles["load"]
        rp = net.profiles["renewables"]
        bl = load.loc[bg_load_labels]
        if bg_load_labels:
            bg_p = shared_window_average(
                lp, [f"{p}_pload" for p in bl["profile"]], **window
            ) * bl["p_mw"].to_numpy(float)[:, None]
            bg_q = shared_window_average(
                lp, [f"{p}_qload" for p in bl["profile"]], **window
            ) * bl["q_mvar"].to_numpy(float)[:, None]
        else:
            bg_p = bg_q = np.zeros((0, n_int))
        bs = net.sgen.loc[bg_sgen_labels]
        if bg_sgen_labels:
            cols = [p if p in rp.columns else None for p in bs["profile"].astype(str)]
            bg_sg = shared_window_average(rp, cols, **window) * bs["p_mw"].to_numpy(float)[:, None]
        else:
            bg_sg = np.zeros((0, n_int))
        pv_cols = [c for c in rp.columns if str(c).startswith("PV")]
    else:
        shape = aggregate_load_shape(
            start=scenario.start, duration_s=scenario.duration_s, interval_s=interval_s
        )
        bl = load.loc[bg_load_labels]
        bg_p = bl["p_mw"].to_numpy(float)[:, None] * shape[None, :]
        bg_q = bl["q_mvar"].to_numpy(float)[:, None] * shape[None, :]
        bg_sg = net.sgen["p_mw"].to_numpy(float)[:, None] * np.ones((1, n_int))
        pv_cols = []

    # --- PV
    pv_spec = hh_spec.pv
    n_pv = round(pv_spec.share * n_hh)
    pv_idx = np.sort(rng.choice(n_hh, size=n_pv, replace=False)) if n_pv else np.zeros(0, _I64)
    kwp = np.zeros(n_hh)
    kwp[pv_idx] = np.round(rng.uniform(pv_spec.kwp_min, pv_spec.kwp_max, size=n_pv), 1)
    kwp[pv_idx] = np.clip(kwp[pv_idx], pv_spec.kwp_min, pv_spec.kwp_max)
    pv_pu = np.zeros((n_hh, n_int))
    if n_pv:
        if is_simbench and pv_cols:
            rp = net.profiles["renewables"]
            col_pick = rng.integers(len(pv_cols), size=n_pv)
            pv_pu[pv_idx] = np.clip(shared_window_average(
                rp, [pv_cols[int(c)] for c in col_pick], **window), 0.0, 1.0)
        else:
            pv_pu[pv_idx] = synthetic_pv_pu(
                rng, n=n_pv, start=scenario.start, duration_s=scenario.duration_s,
                interval_s=interval_s,
            )
    sgen_label = np.full(n_hh, -1, dtype=_I64)
    if n_pv:
        sgen_label[pv_idx] = pp.create_sgens(
            net, buses=hh_bus[pv_idx], p_mw=0.0, q_mvar=0.0, sn_mva=kwp[pv_idx] / 1000.0,
            name=[f"household {i} PV" for i in pv_idx], type="PV", controllable=False,
        )

    # --- home batteries (behind the meter of PV households)
    bat = hh_spec.battery
    n_bat = round(bat.share * n_pv)
    bat_idx = np.sort(rng.choice(pv_idx, size=n_bat, replace=False)) if n_bat else np.zeros(0, _I64)
    hh_storage_label = np.full(n_hh, -1, dtype=_I64)
    if n_bat:
        hh_storage_label[bat_idx] = pp.create_storages(
            net, buses=hh_bus[bat_idx], p_mw=0.0, max_e_mwh=bat.capacity_kwh / 1000.0,
            q_mvar=0.0, sn_mva=bat.power_kw / 1000.0, soc_percent=100.0 * bat.soc_init,
            min_e_mwh=bat.soc_min * bat.capacity_kwh / 1000.0,
            name=[f"household {i} battery" for i in bat_idx], type="home_battery",
        )

    # --- EVs
    ev = scenario.agents.evs
    if ev.count:
        ev_hh = rng.choice(n_hh, size=ev.count, replace=ev.count > n_hh).astype(_I64)
    else:
        ev_hh = np.zeros(0, _I64)
    ev_label = np.zeros(0, _I64)
    if ev_hh.size:
        ev_label = np.asarray(pp.create_loads(
            net, buses=hh_bus[ev_hh], p_mw=0.0, q_mvar=0.0, sn_mva=ev.charger_kw / 1000.0,
            name=[f"ev {j}" for j in range(ev_hh.size)], type="ev",
        ), dtype=_I64)

    # --- community batteries
    cs = scenario.agents.community_storage
    cs_bus = (
        hh_bus[rng.choice(n_hh, size=cs.count, replace=cs.count > n_hh)].astype(_I64)
        if cs.count
        else np.zeros(0, _I64)
    )
    cs_label = np.array(
        [
            pp.create_storage(
                net, bus=int(b), p_mw=0.0, max_e_mwh=cs.capacity_kwh / 1000.0, q_mvar=0.0,
                sn_mva=cs.power_kw / 1000.0, soc_percent=100.0 * cs.soc_init,
                min_e_mwh=cs.soc_min * cs.capacity_kwh / 1000.0,
                name=f"community battery {j}", type="community_battery",
            )
            for j, b in enumerate(cs_bus)
        ],
        dtype=_I64,
    )

    if "profiles" in net:
        del net["profiles"]

    def rows(index: Any, labels: np.ndarray) -> np.ndarray:
        out = np.full(labels.size, -1, dtype=_I64)
        mask = labels >= 0
        if mask.any():
            out[mask] = _pos(index, labels[mask])
        return out

    element_phase = None
    network = None
    regulators: tuple[Any, ...] = ()
    if scenario.grid.kind == "opendss" and scenario.grid.opendss is not None:
        from twin.grid.opendss_grid import deck_feeder, deck_regulators

        network = deck_feeder(scenario.grid.opendss)
        regulators = deck_regulators(scenario.grid.opendss)
    if scenario.grid.phases == 3:  # drawn last: the balanced feeder's draws stay as they were
        element_phase = _element_phases(
            scenario, net=net, rng=rng, hh_labels=hh_labels, pv_idx=pv_idx, sgen_label=sgen_label,
            bat_idx=bat_idx, hh_storage_label=hh_storage_label, ev_hh=ev_hh, ev_label=ev_label,
            cs_label=cs_label, network=network)

    feeder = Feeder(
        net=net,
        kind=scenario.grid.kind,
        name=scenario.grid.simbench_code if scenario.grid.kind == "simbench" else scenario.grid.kind,
        interval_s=interval_s,
        n_intervals=n_int,
        profile_source=profile_source,
        household_bus=hh_bus,
        household_load_row=_pos(net.load.index, hh_labels),
        household_sgen_row=rows(net.sgen.index, sgen_label),
        household_pv_kwp=kwp,
        household_storage_row=rows(net.storage.index, hh_storage_label),
        household_load_p_mw=np.clip(np.asarray(hh_p, float), 0.0, None),
        household_load_q_mvar=np.asarray(hh_q, float),
        household_pv_pu=pv_pu,
        ev_household=ev_hh,
        ev_bus=hh_bus[ev_hh] if ev_hh.size else np.zeros(0, _I64),
        ev_load_row=rows(net.load.index, ev_label),
        storage_bus=cs_bus,
        storage_row=rows(net.storage.index, cs_label),
        background_load_row=_pos(net.load.index, bg_load_labels),
        background_load_p_mw=np.asarray(bg_p, float),
        background_load_q_mvar=np.asarray(bg_q, float),
        background_sgen_row=_pos(net.sgen.index, bg_sgen_labels),
        background_sgen_p_mw=np.asarray(bg_sg, float),
        phases=scenario.grid.phases,
        element_phase=element_phase,
        phase_network=network,
        phase_regulators=regulators,
    )
    _readonly(
        *(getattr(feeder, f) for f in Feeder.__dataclass_fields__ if f not in {"net", "kind", "name",
          "interval_s", "n_intervals", "profile_source", "phases", "element_phase",
          "phase_network", "phase_regulators"})
    )
    return feeder
