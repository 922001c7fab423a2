"""Shared fixtures: a bank of three devices and a running server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from twin.hil.core import DeviceInput, HILBank
from twin.hil.device import DeviceSpec
from twin.hil.server import ModbusServer

PV, BAT, METER = 1, 2, 3


def make_bank() -> HILBank:
    bank = HILBank([
        DeviceSpec(unit_id=PV, name="pv", kind="pv_inverter", nameplate_w=10_000),
        DeviceSpec(unit_id=BAT, name="bat", kind="battery", nameplate_w=30_000,
                   capacity_wh=100_000, soc_min=0.1, soc_max=0.95, soc_init=0.5),
        DeviceSpec(unit_id=METER, name="meter", kind="meter", nameplate_w=250_000),
    ])
    bank.step(now_s=0.0, dt_s=0.0, inputs={
        PV: DeviceInput(available_w=8_000, v=236.0), BAT: DeviceInput(available_w=-5_000, v=235.0),
        METER: DeviceInput(available_w=42_000, var=3_000, v=235.75),
    })
    return bank


@pytest.fixture
def bank() -> HILBank:
    return make_bank()


@pytest.fixture
def server(bank: HILBank) -> Iterator[ModbusServer]:
    srv = ModbusServer(bank, host="127.0.0.1", port=0, max_connections=12, idle_timeout_s=1.0,
                       frame_timeout_s=0.5)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
