"""Grid simulator with DER functions and an OLTC: volt-var lowers the voltage, the tap steps."""

from __future__ import annotations

from typing import Any

import numpy as np
from _lvnets import lv_feeder

from twin.cosim.grid_sim import GridSim
from twin.grid.controlled_pf import DerDevice
from twin.grid.der_functions import DerFunctions, VoltVar
from twin.grid.der_spec import OltcSpec


class _Rows:
    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def add(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.tables.setdefault(name, []).extend(rows)

    def add_columns(self, name: str, columns: dict[str, Any], *, n: int | None = None) -> None:
        self.tables.setdefault(name, []).append(dict(columns))  # bus / line columns (unused here)


def _run(devices: list[DerDevice], oltc: OltcSpec | None, steps: int = 3) -> list[dict[str, Any]]:
    net = lv_feeder(6, pv_kw=35.0)
    net.trafo["tap_pos"] = 0.0
    sim = GridSim()
    rec = _Rows()
    sim.init("Grid-0", net=net, recorder=rec, interval_s=900, der_devices=devices, oltc=oltc,
             frequency_hz=lambda time_s: 50.0)
    power = {"load_p_mw": net.load.p_mw.to_numpy(), "load_q_mvar": net.load.q_mvar.to_numpy(),
             "sgen_p_mw": net.sgen.p_mw.to_numpy(), "sgen_q_mvar": np.zeros(len(net.sgen)),
             "storage_p_mw": np.zeros(0)}
    for k in range(steps):
        sim.step(900 * k, {"grid": {"element_power": {"agents": power}}}, 900 * steps)
    return rec.tables["grid"]


def test_volt_var_and_oltc_in_the_grid_simulator() -> None:
    plain = _run([], None)
    fn = DerFunctions(s_rated_mva=0.0385, p_rated_mw=0.035, reactive=VoltVar.category("B"))
    vv = _run([DerDevice("sgen", i, fn) for i in range(6)], None)
    assert vv[0]["vm_max_pu"] < plain[0]["vm_max_pu"] - 0.005 and vv[0]["der_q_mvar"] < 0
    tap = _run([], OltcSpec(v_set_pu=1.0, band_pu=0.04, delay_s=0.0))
    assert tap[0]["oltc_tap"] == 0 and tap[-1]["oltc_tap"] != 0  # the tap moved after step 0
    assert tap[-1]["vm_max_pu"] < tap[0]["vm_max_pu"]  # the tap lowered the feeder voltage
