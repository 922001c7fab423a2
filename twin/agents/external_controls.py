"""A feeder model interval's dispatch under external DER controls (HIL, ``twin hil serve``):
:func:`controlled_dispatch`, called by :meth:`twin.agents.model.FeederModel.step_interval`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twin.agents._common import wh_to_mw
from twin.agents.controls import DERControl
from twin.agents.ev import EVFleet
from twin.agents.household import Households
from twin.agents.storage import CommunityStorage
from twin.grid.feeders import Feeder

__all__ = ["controlled_dispatch"]


def controlled_dispatch(
    k: int, der_controls: Mapping[int, DERControl], *, feeder: Feeder, households: Households,
    evs: EVFleet, storage: CommunityStorage, interval_s: int, hh_index: Mapping[int, int],
    ev_index: Mapping[int, int], cs_index: Mapping[int, int], ev_b: np.ndarray,
    ev_cut: np.ndarray, cs_b: np.ndarray, cs_s: np.ndarray, dr: bool = False,
    ev_s: np.ndarray | None = None, free: dict[str, dict[int, float]] | None = None,
) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray, np.ndarray | None],
           tuple[np.ndarray, np.ndarray]]:
    """Dispatch inputs of interval ``k`` under external controls (HIL, ``twin hil serve``).

    By device id: a household's control acts on its PV inverter (a cap on its output,
    the home battery then sees the capped PV); an EV's on its charger (a cap on the
    charging the EV would do); a community battery's replaces its trade-following
    dispatch (``w_set_w`` an exact set-point, generator convention, then ``w_max_w``;
    the SOC band still holds). Metering, SOC and settlement follow what was dispatched;
    trades stay as cleared, so a deviation is an imbalance. A V2G EV that sold has its
    discharge capped the same way (generator convention). Returns ``(pv_cap_wh or None,
    (ev bought, ev curtailed, ev sold), (storage bought, storage sold))``; ``free`` gets
    each controlled device's dispatch without controls (element MW, by table and row).
    """
    if not der_controls:
        return None, (ev_b, ev_cut, ev_s), (cs_b, cs_s)
    dt_h = interval_s / 3600.0
    f, hh, ev, cs = feeder, households, evs, storage
    pv_cap = np.full(hh.n, np.inf)
    ev_b, ev_cut = ev_b.copy(), ev_cut.copy()
    ev_s = None if ev_s is None else ev_s.copy()
    ev_plan = ev.plan(k, bought_wh=ev_b, curtailed=ev_cut, dr=dr, sold_wh=ev_s)
    cs_plan = cs.plan(bought_wh=cs_b, sold_wh=cs_s).metered_wh
    cs_b, cs_s = cs_b.copy(), cs_s.copy()
    free = {} if free is None else free
    for device in der_controls:
        if (i := hh_index.get(device)) is not None and f.household_sgen_row[i] >= 0:
            free.setdefault("sgen", {})[int(f.household_sgen_row[i])] = float(wh_to_mw(
                hh.pv_wh_base[i, k], interval_s))
        elif (e := ev_index.get(device)) is not None:
            free.setdefault("load", {})[int(f.ev_load_row[e])] = float(wh_to_mw(ev_plan[e], interval_s))
        elif (j := cs_index.get(device)) is not None:
            free.setdefault("storage", {})[int(f.storage_row[j])] = float(wh_to_mw(cs_plan[j],
                                                                                    interval_s))
    for device, ctl in der_controls.items():
        if (i := hh_index.get(device)) is not None:
            w, _ = ctl.apply(available_w=float(f.household_pv_kwp[i]) * 1e3)
            pv_cap[i] = max(w, 0.0) * dt_h
        elif (e := ev_index.get(device)) is not None and ev_s is not None and ev_plan[e] < 0:
            w, _ = ctl.apply(available_w=-float(ev_plan[e]) / dt_h)  # V2G discharge
            ev_s[e] = min(max(w * dt_h, 0.0), -float(ev_plan[e]))
        elif (e := ev_index.get(device)) is not None:
            w, _ = ctl.apply(available_w=-float(ev_plan[e]) / dt_h)
            charge = min(max(-w * dt_h, 0.0), float(ev_plan[e]))
            if charge < ev_plan[e]:  # a curtailed EV charges min(bought, need, cap)
                ev_b[e], ev_cut[e] = charge, True
        elif (j := cs_index.get(device)) is not None:
            w, _ = ctl.apply(available_w=-float(cs_plan[j]) / dt_h, exact_set_point=True)
            net_wh = -w * dt_h  # consumption positive; dispatch clips to power and SOC
            cs_b[j], cs_s[j] = max(net_wh, 0.0), max(-net_wh, 0.0)
        else:
            raise ValueError(f"der_controls: device {device} is not a device of this feeder")
    return pv_cap, (ev_b, ev_cut, ev_s), (cs_b, cs_s)
