"""The twin side of HIL: which feeder elements each device mirrors, and the per-step coupling.

:func:`resolve_devices` turns the scenario's ``hil.devices`` and the built feeder into
:class:`MirroredDevice` rows (element table + row, bus position). :class:`HILCoupling`
takes the agents' element powers and the last bus voltages, runs one :meth:`HILBank.step`,
and returns the element powers with the devices' delivered powers in place — the physical
devices obey their controllers, so the grid sees the controlled injection.

Conventions: element powers are pandapower's (``sgen`` generation positive, ``load`` and
``storage`` consumption positive); HIL DER powers are SunSpec's generator convention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twin.hil.books import BookedElement
from twin.hil.core import DeviceInput, DeviceOutput, HILBank
from twin.hil.device import V_NOM, DeviceSpec

__all__ = ["HILCoupling", "MirroredDevice", "book_elements", "market_device_ids", "resolve_devices"]

Table = Literal["sgen", "load", "storage"]


@dataclass(frozen=True, slots=True)
class MirroredDevice:
    spec: DeviceSpec
    agent: str | None
    table: Table | None  # None: a meter
    row: int  # element row (-1 for meters)
    bus: int  # bus id
    bus_pos: int  # position in the grid's vm_pu list
    #: meter of a household: (load row, sgen row or -1, storage row or -1); None: feeder head
    meter_rows: tuple[int, int, int] | None = None

    def describe(self) -> dict[str, Any]:
        return {"unit_id": self.spec.unit_id, "device": self.spec.name, "kind": self.spec.kind,
                "mirrors": self.agent or "feeder connection point",
                "element": f"{self.table}[{self.row}]" if self.table else None, "bus": self.bus,
                "nameplate_w": self.spec.nameplate_w}


def _index(agent: str) -> int:
    return int(agent.rsplit("_", 1)[1])


def resolve_devices(scenario: Any, feeder: Any) -> list[MirroredDevice]:
    """Mirrored devices of ``scenario.hil`` on ``feeder``; ValueError naming the field."""
    bus_ids = [int(b) for b in feeder.net.bus.index]
    pos = {b: i for i, b in enumerate(bus_ids)}
    ag = scenario.agents
    out: list[MirroredDevice] = []
    for n, d in enumerate(scenario.hil.devices):
        where = f"hil.devices.{n}"
        agent = d.agent
        i = _index(agent) if agent else -1
        meter_rows = None
        capacity_wh = 0.0
        soc = (0.0, 1.0, 0.5)
        table: Table | None = None
        row = -1

        def need(count: int, what: str, i: int = i, where: str = where,
                 agent: str | None = agent) -> None:
            if not 0 <= i < count:
                raise ValueError(f"{where}.agent: {agent} does not exist ({count} {what})")

        if d.kind == "pv_inverter":
            need(feeder.n_households, "households")
            row = int(feeder.household_sgen_row[i])
            if row < 0:
                raise ValueError(f"{where}.agent: {agent} has no PV")
            table, bus = "sgen", int(feeder.household_bus[i])
            rating = float(feeder.household_pv_kwp[i]) * 1e3
        elif d.kind == "battery" and agent and agent.startswith("storage"):
            need(len(feeder.storage_row), "community batteries")
            table, row, bus = "storage", int(feeder.storage_row[i]), int(feeder.storage_bus[i])
            cs = ag.community_storage
            rating, capacity_wh = cs.power_kw * 1e3, cs.capacity_kwh * 1e3
            soc = (cs.soc_min, cs.soc_max, cs.soc_init)
        elif d.kind == "battery":
            need(feeder.n_households, "households")
            row = int(feeder.household_storage_row[i])
            if row < 0:
                raise ValueError(f"{where}.agent: {agent} has no home battery")
            table, bus = "storage", int(feeder.household_bus[i])
            hb = ag.households.battery
            rating, capacity_wh = hb.power_kw * 1e3, hb.capacity_kwh * 1e3
            soc = (hb.soc_min, hb.soc_max, hb.soc_init)
        elif d.kind == "ev_charger":
            need(len(feeder.ev_load_row), "EVs")
            table, row, bus = "load", int(feeder.ev_load_row[i]), int(feeder.ev_bus[i])
            rating, capacity_wh = ag.evs.charger_kw * 1e3, ag.evs.battery_kwh * 1e3
        elif agent:  # household meter
            need(feeder.n_households, "households")
            bus = int(feeder.household_bus[i])
            meter_rows = (int(feeder.household_load_row[i]), int(feeder.household_sgen_row[i]),
                          int(feeder.household_storage_row[i]))
            rating = 0.0
        else:  # connection point: the external grid's bus
            bus = int(feeder.net.ext_grid.bus.iloc[0])
            rating = 0.0
        if d.bus is not None:
            bus = d.bus
        if bus not in pos:
            raise ValueError(f"{where}.bus: bus {bus} is not in the feeder")
        if d.nameplate_kw is not None:
            rating = d.nameplate_kw * 1e3
        if rating <= 0:
            rating = 30e3  # a household meter without a stated rating
        spec = DeviceSpec(unit_id=d.unit_id, name=d.name or agent or "feeder_meter", kind=d.kind,
                          nameplate_w=rating, capacity_wh=capacity_wh, soc_min=soc[0],
                          soc_max=soc[1], soc_init=soc[2], serial=f"{scenario.name}-{d.unit_id}",
                          heartbeat_timeout_s=scenario.hil.heartbeat_timeout_s)
        out.append(MirroredDevice(spec=spec, agent=agent, table=table, row=row, bus=bus,
                                  bus_pos=pos[bus], meter_rows=meter_rows))
    return out


def market_device_ids(devices: Sequence[MirroredDevice], model: Any) -> dict[int, int]:
    """Unit id -> market device id whose dispatch the agents model controls.

    ``model`` is a :class:`twin.agents.model.FeederModel`. A household's PV inverter, an EV
    charger and a community battery; a household's home battery shares the household's
    device id with its PV and is controlled on the element powers only (not in the books).
    """
    out: dict[int, int] = {}
    for d in devices:
        if d.agent is None or d.spec.kind == "meter":
            continue
        i = _index(d.agent)
        if d.spec.kind == "pv_inverter":
            out[d.spec.unit_id] = int(model.households.device_id[i])
        elif d.spec.kind == "ev_charger":
            out[d.spec.unit_id] = int(model.evs.device_id[i])
        elif d.spec.kind == "battery" and d.agent.startswith("storage"):
            out[d.spec.unit_id] = int(model.storage.device_id[i])
    return out


def book_elements(devices: Sequence[MirroredDevice], model: Any) -> list[BookedElement]:
    """The mirrored DER elements with the market device whose meter each one is behind.

    Unlike :func:`market_device_ids` a household's home battery is included: it is behind
    the household's meter, so what it delivers moves that reading (and its own SOC).
    """
    out: list[BookedElement] = []
    for d in devices:
        if d.table is None:
            continue
        device: int | None = None
        if d.agent is not None:
            i = _index(d.agent)
            if d.spec.kind == "ev_charger":
                device = int(model.evs.device_id[i])
            elif d.spec.kind == "battery" and d.agent.startswith("storage"):
                device = int(model.storage.device_id[i])
            else:  # a household's PV inverter or home battery
                device = int(model.households.device_id[i])
        out.append(BookedElement(unit_id=d.spec.unit_id, table=d.table, row=d.row, device_id=device))
    return out


_SIGN = {"sgen": 1.0, "load": -1.0, "storage": -1.0}  # element p_mw -> generator-convention W


class HILCoupling:
    """One step of HIL on element-power arrays (pure; the mosaik adapter calls it)."""

    def __init__(self, bank: HILBank, devices: Sequence[MirroredDevice], *,
                 frequency_hz: Callable[[float], float] | None = None) -> None:
        self.bank = bank
        self.devices = list(devices)
        self._der = [d for d in devices if d.table is not None]
        self._meters = [d for d in devices if d.table is None]
        #: system frequency at a twin time (the TSO's series); None: nominal
        self.frequency_hz = frequency_hz
        self._soc_seen: dict[int, float] = {}

    def step(self, *, now_s: float, dt_s: float, power: Mapping[str, Any],
             vm_pu: Sequence[float] | None) -> tuple[dict[str, Any], dict[int, tuple[DeviceInput, DeviceOutput]]]:
        """``(controlled element power, {unit: (input, output)})`` for one step.

        A device's input is its own dispatch: the agents' element power, or, for a device
        whose controls the agents applied this interval, its dispatch without them
        (``free_p_mw``), so that a control lifted now is lifted at this step. A battery
        starts each market interval at the agents' state of charge (``storage_soc``) and
        integrates what it delivers in between.
        """
        hz = self.frequency_hz(now_s) if self.frequency_hz is not None else 50.0
        free = power.get("free_p_mw") or {}
        socs = power.get("storage_soc") or {}
        p = {t: np.array(power[f"{t}_p_mw"], dtype=float) for t in _SIGN}
        q = {t: np.array(power[f"{t}_q_mvar"], dtype=float) if f"{t}_q_mvar" in power
             else np.zeros_like(p[t]) for t in _SIGN}

        def volts(d: MirroredDevice) -> float:
            return float(vm_pu[d.bus_pos]) * V_NOM if vm_pu else V_NOM

        inputs = {}
        for d in self._der:
            assert d.table is not None
            s = _SIGN[d.table]
            own = free.get(d.table, {}).get(str(d.row), p[d.table][d.row])
            soc = None
            if d.table == "storage" and str(d.row) in socs:
                x = float(socs[str(d.row)])
                if self._soc_seen.get(d.spec.unit_id) != x:  # a new interval's books
                    soc = self._soc_seen[d.spec.unit_id] = x
            inputs[d.spec.unit_id] = DeviceInput(available_w=s * float(own) * 1e6,
                                                 var=s * q[d.table][d.row] * 1e6, v=volts(d),
                                                 hz=hz, soc=soc)
        outs = self.bank.step(now_s=now_s, dt_s=dt_s, inputs=inputs)
        for d in self._der:
            assert d.table is not None
            o = outs[d.spec.unit_id]
            s = _SIGN[d.table]
            p[d.table][d.row] = s * o.w / 1e6
            if d.table in ("sgen", "load"):  # the grid takes no reactive power of storage
                q[d.table][d.row] = s * o.var / 1e6
        m_inputs = {}
        for d in self._meters:
            if d.meter_rows is None:
                w = (p["load"].sum() - p["sgen"].sum() + p["storage"].sum()) * 1e6
                var = (q["load"].sum() - q["sgen"].sum() + q["storage"].sum()) * 1e6
            else:
                lr, sr, br = d.meter_rows
                w = p["load"][lr] - (p["sgen"][sr] if sr >= 0 else 0.0) + (p["storage"][br] if br >= 0 else 0.0)
                var = q["load"][lr] - (q["sgen"][sr] if sr >= 0 else 0.0)
                w, var = w * 1e6, var * 1e6
            m_inputs[d.spec.unit_id] = DeviceInput(available_w=float(w), var=float(var), v=volts(d), hz=hz)
        if m_inputs:
            outs.update({u: o for u, o in self.bank.step(now_s=now_s, dt_s=dt_s, inputs=m_inputs).items()
                         if u in m_inputs})
        out_power = {k: v for k, v in power.items() if k not in ("free_p_mw", "storage_soc")}
        for t in _SIGN:
            out_power[f"{t}_p_mw"] = p[t]
            out_power[f"{t}_q_mvar"] = q[t]
        both = {**inputs, **m_inputs}
        return out_power, {u: (both[u], outs[u]) for u in both}
