"""Scenario spec of hardware in the loop (twin/hil): the SunSpec Modbus devices and timing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from twin.spec_base import PosFloat, SpecModel

__all__ = ["HILDeviceSpec", "HILSpec"]

_Spec = SpecModel


class HILDeviceSpec(_Spec):
    """One SunSpec Modbus device served to external controllers (``twin hil serve``).

    ``agent`` names what the device mirrors: ``household_<i>`` (its PV for a
    ``pv_inverter``, its home battery for a ``battery``, its meter for a ``meter``),
    ``storage_<j>`` (community battery), ``ev_<e>`` (EV charger); a ``meter`` without an
    agent is the feeder's connection point (sum of all elements, losses excluded).
    ``bus`` overrides the bus whose voltage the device reports.
    """

    unit_id: Annotated[int, Field(ge=1, le=247)]
    kind: Literal["pv_inverter", "battery", "ev_charger", "meter"]
    agent: Annotated[str, Field(pattern=r"^(household|storage|ev)_[0-9]+$")] | None = None
    bus: Annotated[int, Field(ge=0)] | None = None
    nameplate_kw: PosFloat | None = None  # default: the mirrored agent's rating
    name: str | None = None

    @model_validator(mode="after")
    def _agent(self) -> HILDeviceSpec:
        prefix = (self.agent or "").split("_")[0]
        allowed = {"pv_inverter": {"household"}, "battery": {"household", "storage"},
                   "ev_charger": {"ev"}, "meter": {"household", ""}}[self.kind]
        if self.kind != "meter" and self.agent is None:
            raise ValueError(f"a {self.kind} needs the agent it mirrors")
        if prefix not in allowed:
            raise ValueError(f"a {self.kind} cannot mirror {self.agent}")
        if self.kind == "meter" and self.agent is None and self.nameplate_kw is None:
            raise ValueError("a feeder meter needs nameplate_kw (its rating)")
        return self


class HILSpec(_Spec):
    """HIL devices and timing; empty by default (``twin run`` ignores it)."""

    devices: list[HILDeviceSpec] = Field(default_factory=list)
    #: HIL step (register refresh, controls, reversion timers); default: market.interval_s
    step_s: Annotated[int, Field(gt=0)] | None = None
    #: a step starting later than this after its real-time deadline is a deadline miss
    deadline_tolerance_s: PosFloat = 0.1
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 16
    idle_timeout_s: PosFloat = 60.0
    #: a frame must be complete this long after its first byte (a slow drip cannot extend it)
    frame_timeout_s: PosFloat = 2.0
    #: requests per second and connection; above it the server answers exception 0x06
    max_requests_per_s: Annotated[int, Field(ge=1, le=100_000)] = 100
    #: address of the lab's controller: one of max_connections is kept for it
    controller_host: str | None = None
    #: once a controller wrote a heartbeat (715 ControllerHb, 802 CtrlHb), this long
    #: without a new one reverts the device's timed controls (communication loss)
    heartbeat_timeout_s: PosFloat = 60.0

    @model_validator(mode="after")
    def _units(self) -> HILSpec:
        ids = [d.unit_id for d in self.devices]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"unit ids used more than once: {dup}")
        if self.controller_host is not None and self.max_connections < 2:
            raise ValueError("max_connections must be at least 2 with a controller_host")
        return self
