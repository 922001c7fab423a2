"""Per-phase operating envelopes (twin/grid/envelopes3ph.py): on an unbalanced feeder the
balanced envelope lets phase a exceed 1.10 pu, the per-phase one keeps it in band and no
tighter than one level; pandapower's runpp_3ph is the referee."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest
from _helpers import dyn_lv_net

from twin.grid.envelopes import Connection, EnvelopeError, compute_envelopes
from twin.grid.envelopes3ph import compute_envelopes_3ph
from twin.grid.pf import BatchPowerFlow
from twin.grid.phase_spec import PHASE_ABC
from twin.grid.snapshot3ph import PhaseSnapshot


def _net() -> object:
    """dyn_lv_net with a three-phase house and two 30 kW PV meters, on phases a and b, at bus 2."""
    net = dyn_lv_net()
    pp.create_load(net, bus=2, p_mw=0.0)
    pp.create_sgen(net, bus=2, p_mw=0.0)
    pp.create_sgen(net, bus=2, p_mw=0.0)
    return net


PHASES = {"load": np.array([PHASE_ABC]), "sgen": np.array([0, 1]), "storage": np.zeros(0, np.int64)}
KW = {"p_mw": {"load": np.array([0.003]), "sgen": np.zeros(2), "storage": np.zeros(0)},
      "q_mvar": {"load": np.zeros(1), "sgen": np.zeros(2), "storage": np.zeros(0)},
      "exports": [Connection(device_id=1, table="sgen", row=0, coef=1.0, capacity_mw=0.03, potential_mw=0.03),
                  Connection(device_id=2, table="sgen", row=1, coef=1.0, capacity_mw=0.03, potential_mw=0.03)],
      "imports": [], "rule": "equal", "n_levels": 16, "vm_min_pu": 0.9, "vm_max_pu": 1.10,
      "max_loading_percent": 100.0}


def _runpp_3ph(pv_a_mw: float, pv_b_mw: float) -> tuple[float, float]:
    """Highest phase voltage and VUF at the exports, by pandapower's asymmetric flow."""
    ref = _net()
    pp.create_asymmetric_load(ref, bus=2, p_a_mw=0.001, p_b_mw=0.001, p_c_mw=0.001)
    pp.create_asymmetric_sgen(ref, bus=2, p_a_mw=pv_a_mw, p_b_mw=pv_b_mw, p_c_mw=0.0)
    pp.runpp_3ph(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    vm = ref.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    return float(vm.max()), float(ref.res_bus_3ph.unbalance_percent.max())


def test_per_phase_envelope_keeps_the_loaded_phase_in_band() -> None:
    flat = compute_envelopes(BatchPowerFlow(_net(), kernel="numpy"), **KW)
    assert flat.export_mw == {1: 0.03, 2: 0.03}  # the balanced model spreads 60 kW over three phases
    assert _runpp_3ph(0.03, 0.03)[0] > 1.10  # ... and phase a goes over the band
    env = compute_envelopes_3ph(PhaseSnapshot(_net(), phase=PHASES), vuf_max_percent=2.0, **KW)
    a, b = env.export_mw[1], env.export_mw[2]
    assert b == 0.03 and 0 < a < 0.03  # phase b keeps its headroom, phase a is limited by its own
    assert env.export_phase_level["a"] < env.export_phase_level["b"] == 1.0
    vm, vuf = _runpp_3ph(a, b)
    assert vm <= 1.10 and vuf <= 2.0
    assert _runpp_3ph(a + 0.03 / 16, b)[0] > 1.10  # one level more would not be secure: not tighter


def test_unbalance_limit_binds_per_phase() -> None:
    # a tight VUF limit binds before the band: the referee's VUF stays under it
    env = compute_envelopes_3ph(PhaseSnapshot(_net(), phase=PHASES), vuf_max_percent=1.0, **KW)
    a, b = env.export_mw[1], env.export_mw[2]
    vm, vuf = _runpp_3ph(a, b)
    assert vuf <= 1.0 and vm <= 1.10
    assert a + b < 0.06


def test_levels_span_what_the_connections_can_do() -> None:
    # 100 kW connections forecast to export 30 kW: the 16 levels span 30 kW, not 100
    big = [Connection(device_id=c.device_id, table=c.table, row=c.row, coef=1.0, capacity_mw=0.1,
                      potential_mw=0.03) for c in KW["exports"]]
    env = compute_envelopes_3ph(PhaseSnapshot(_net(), phase=PHASES), vuf_max_percent=2.0,
                                **{**KW, "exports": big})
    assert env.export_mw[2] == 0.1  # phase b: level 1, the connection's capacity
    a = env.export_mw[1]
    assert _runpp_3ph(a, 0.03)[0] <= 1.10 < _runpp_3ph(a + 0.03 / 16, 0.03)[0]


def test_negative_headroom_on_a_phase_is_a_clear_error() -> None:
    # the forecast without exports is already above a 0.95 pu band: no export limit can be met
    kw = {**KW, "vm_max_pu": 0.95}
    snap = PhaseSnapshot(_net(), phase=PHASES)
    with pytest.raises(EnvelopeError, match=r"dso\.envelopes\.negative: negative export headroom at interval 3"):
        compute_envelopes_3ph(snap, vuf_max_percent=2.0, negative="error", where=" at interval 3", **kw)
    env = compute_envelopes_3ph(snap, vuf_max_percent=2.0, **kw)  # negative="zero": nothing may be exported
    assert env.export_negative and set(env.export_mw.values()) == {0.0}
    assert env.export_phase_level == {"a": -1.0, "b": -1.0}
