"""The agents' books follow what HIL devices delivered (``twin hil serve``).

The agents dispatch a market interval at its start. Under HIL a controller may change a
device inside the interval; the HIL adapter integrates what each device delivered per HIL
step (:mod:`twin.hil.books`) and, once the interval has ended, hands the differences to
the agents: :func:`corrected_readings` gives the interval's meter readings on delivered
energy (settled at ``(k + 1)·T``), :func:`apply_storage_delta` moves the batteries' stored
energy by what they really took in or gave (round-trip efficiency split ``sqrt(eta)`` each
way, as the fleets dispatch), clipped to the battery's capacity; :func:`apply_ev_delta` does
the same for an EV behind a HIL charger (charging lossless, V2G through its efficiency, as
the EV fleet dispatches); :func:`delivered_columns` rewrites the interval's ``agents`` rows
(reading, power, PV, battery and EV energy, state of charge) on what was delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["apply_ev_delta", "apply_storage_delta", "corrected_readings", "delivered_columns"]


def corrected_readings(planned_wh: Mapping[int, int], delta_wh: Mapping[int, float]) -> dict[int, int]:
    """Meter readings (integer Wh) with each device's delivered-energy correction added."""
    unknown = sorted(set(delta_wh) - set(planned_wh))
    if unknown:
        raise ValueError(f"hil_books.meter_delta_wh: devices {unknown} have no meter reading")
    return {d: int(wh + round(delta_wh.get(d, 0.0))) for d, wh in planned_wh.items()}


def apply_storage_delta(model: Any, storage_delta_wh: Mapping[int, float]) -> dict[int, float]:
    """Add AC energy (Wh, consumption positive) to the batteries at these storage rows.

    ``model`` is a :class:`twin.agents.model.FeederModel`. Returns the new state of charge
    by storage row. ValueError naming the row when it is not a battery of the feeder.
    """
    f = model.feeder
    community = {int(r): j for j, r in enumerate(np.asarray(f.storage_row).tolist())}
    homes = {int(r): i for i, r in enumerate(np.asarray(f.household_storage_row).tolist()) if r >= 0}
    out: dict[int, float] = {}
    for row, wh in sorted(storage_delta_wh.items()):
        if row in community:
            fleet, i, cap = model.storage, community[row], float(model.storage.capacity_wh)
        elif row in homes:
            fleet, i = model.households, homes[row]
            cap = float(model.households.battery_capacity_wh[i])
        else:
            raise ValueError(f"hil_books.storage_delta_wh: storage row {row} is not a battery of the feeder")
        stored = wh * fleet.eta if wh > 0 else wh / fleet.eta
        fleet.energy_wh[i] = float(np.clip(fleet.energy_wh[i] + stored, 0.0, cap))
        out[row] = float(fleet.energy_wh[i]) / cap if cap > 0 else float("nan")
    return out


def apply_ev_delta(model: Any, ev_delta_wh: Mapping[int, float]) -> dict[int, float]:
    """Add AC energy (Wh, consumption positive) to the EVs charging at these load rows.

    Returns the new state of charge by load row; ValueError naming a row that is no EV's.
    """
    rows = {int(r): e for e, r in enumerate(np.asarray(model.feeder.ev_load_row).tolist())}
    ev = model.evs
    out: dict[int, float] = {}
    for row, wh in sorted(ev_delta_wh.items()):
        if row not in rows:
            raise ValueError(f"hil_books.ev_delta_wh: load row {row} is not an EV of the feeder")
        e = rows[row]
        stored = wh if wh > 0 else wh / ev.v2g_eta
        ev.energy_wh[e] = float(np.clip(ev.energy_wh[e] + stored, 0.0, ev.battery_wh))
        out[row] = float(ev.energy_wh[e]) / ev.battery_wh
    return out


def delivered_columns(model: Any, columns: Mapping[str, np.ndarray], *, interval_s: int,
                      meter_delta_wh: Mapping[int, float], sgen_delta_wh: Mapping[int, float],
                      storage_delta_wh: Mapping[int, float],
                      ev_delta_wh: Mapping[int, float]) -> dict[str, np.ndarray]:
    """One interval's ``agents`` columns (:func:`twin.agents.output.agent_columns`, rows:
    households, EVs, community batteries) on the energy the HIL devices delivered.

    Deltas as in :class:`twin.hil.books.DeliveredBook` (Wh, consumption positive). The
    reading (``metered_wh``, as :func:`corrected_readings`) and ``p_mw`` move by the meter
    delta; ``pv_wh`` by the PV's; ``battery_charge_wh`` / ``battery_discharge_wh`` (and an
    EV's ``load_wh``) become the delivered net energy; ``soc`` is the fleet's state of charge
    now: call it after :func:`apply_storage_delta` and :func:`apply_ev_delta`, before the
    next interval's dispatch. Returns new arrays; ValueError naming a device or row the
    columns do not have.
    """
    f, hh, ev, cs = model.feeder, model.households, model.evs, model.storage
    cols = {name: np.array(col, copy=True) for name, col in columns.items()}
    n_h, n_e = int(hh.n), int(ev.n)
    if len(cols["device_id"]) != n_h + n_e + int(cs.n):
        raise ValueError(f"agents columns: {len(cols['device_id'])} rows, the model has "
                         f"{n_h + n_e + int(cs.n)} agents")
    at = {int(d): i for i, d in reversed(list(enumerate(cols["device_id"].tolist())))}
    for device, wh in sorted(meter_delta_wh.items()):
        if device not in at:
            raise ValueError(f"hil_books.meter_delta_wh: device {device} has no agents row")
        i = at[device]
        cols["metered_wh"][i] += round(wh)
        cols["p_mw"][i] += wh * (3600.0 / interval_s) / 1e6
    pv = {int(r): i for i, r in enumerate(np.asarray(f.household_sgen_row).tolist()) if r >= 0}
    for row, wh in sorted(sgen_delta_wh.items()):
        if row not in pv:
            raise ValueError(f"hil_books.sgen_delta_wh: sgen row {row} is not a household's PV")
        cols["pv_wh"][pv[row]] -= wh

    def net(i: int, wh: float) -> None:  # delivered net charge -> charge / discharge columns
        e = float(cols["battery_charge_wh"][i]) - float(cols["battery_discharge_wh"][i]) + wh
        cols["battery_charge_wh"][i], cols["battery_discharge_wh"][i] = max(e, 0.0), max(-e, 0.0)

    community = {int(r): j for j, r in enumerate(np.asarray(f.storage_row).tolist())}
    homes = {int(r): i for i, r in enumerate(np.asarray(f.household_storage_row).tolist()) if r >= 0}
    for row, wh in sorted(storage_delta_wh.items()):
        if row in community:
            i, soc = n_h + n_e + community[row], float(cs.soc[community[row]])
        elif row in homes:
            i, soc = homes[row], float(hh.soc[homes[row]])
        else:
            raise ValueError(f"hil_books.storage_delta_wh: storage row {row} is not a battery of the feeder")
        net(i, wh)
        cols["soc"][i] = soc
    evs = {int(r): e for e, r in enumerate(np.asarray(f.ev_load_row).tolist())}
    for row, wh in sorted(ev_delta_wh.items()):
        if row not in evs:
            raise ValueError(f"hil_books.ev_delta_wh: load row {row} is not an EV of the feeder")
        i = n_h + evs[row]
        net(i, wh)
        cols["load_wh"][i] = cols["battery_charge_wh"][i]
        cols["soc"][i] = float(ev.soc[evs[row]])
    return cols
