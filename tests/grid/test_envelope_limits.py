"""Dynamic operating envelopes (twin/grid/envelopes.py) on a small radial feeder, checked
with pandapower's own power flow at the limits found."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from twin.grid.envelopes import Connection, EnvelopeError, compute_envelopes
from twin.grid.pf import BatchPowerFlow
from twin.scenario import ScenarioError, scenario_from_dict


def _feeder() -> pp.pandapowerNet:
    net = pp.create_empty_network()
    b = [pp.create_bus(net, vn_kv=0.4) for _ in range(4)]
    pp.create_ext_grid(net, b[0], vm_pu=1.0)
    for i in range(3):
        pp.create_line_from_parameters(net, b[i], b[i + 1], length_km=0.15, r_ohm_per_km=0.4,
                                       x_ohm_per_km=0.08, c_nf_per_km=0.0, max_i_ka=0.3)
    for bus in b[1:]:
        pp.create_load(net, bus, p_mw=0.002, q_mvar=0.0)
    pp.create_sgen(net, b[2], p_mw=0.0)  # a 30 kW PV meter
    pp.create_sgen(net, b[3], p_mw=0.0)  # a 10 kW PV meter
    pp.create_load(net, b[3], p_mw=0.0)  # an 11 kW EV charger
    return net


def _problem(net: pp.pandapowerNet) -> dict:
    p = {"load": net.load.p_mw.to_numpy(), "sgen": np.array([0.03, 0.01]), "storage": np.zeros(0)}
    q = {"load": net.load.q_mvar.to_numpy(), "sgen": np.zeros(2), "storage": np.zeros(0)}
    exports = [Connection(device_id=1, table="sgen", row=0, coef=1.0, capacity_mw=0.03, potential_mw=0.03,
                          base_mw=0.03),
               Connection(device_id=2, table="sgen", row=1, coef=1.0, capacity_mw=0.01, potential_mw=0.01,
                          base_mw=0.01)]
    imports = [Connection(device_id=3, table="load", row=3, coef=1.0, capacity_mw=0.011, potential_mw=0.011)]
    return {"p_mw": p, "q_mvar": q, "exports": exports, "imports": imports}


def _vm_max(net: pp.pandapowerNet, sgen_mw: list[float]) -> float:
    net.sgen["p_mw"] = sgen_mw
    net.load.loc[3, "p_mw"] = 0.0
    pp.runpp(net, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    return float(net.res_bus.vm_pu.max())


def test_unconstrained_feeder_gets_device_capacity() -> None:
    net = _feeder()
    env = compute_envelopes(BatchPowerFlow(net, kernel="numpy"), **_problem(net), rule="equal", n_levels=8,
                            vm_min_pu=0.8, vm_max_pu=1.2, max_loading_percent=100.0)
    assert env.export_mw == {1: 0.03, 2: 0.01} and env.import_mw == {3: 0.011}
    assert env.export_level == env.import_level == 1.0 and env.power_flows == 18


@pytest.mark.parametrize("rule", ["equal", "proportional"])
def test_limits_are_secure_and_tight(rule: str) -> None:
    net = _feeder()
    vm_full = _vm_max(net, [0.03, 0.01])
    vm_max = 1.0 + 0.6 * (vm_full - 1.0)  # only part of the PV fits
    env = compute_envelopes(BatchPowerFlow(net, kernel="numpy"), **_problem(net), rule=rule, n_levels=40,
                            vm_min_pu=0.9, vm_max_pu=vm_max, max_loading_percent=100.0)
    assert 0 < env.export_level < 1 and env.import_level == 1.0
    lim = env.export_mw
    if rule == "equal":  # one kW figure for both, water-filled at the 10 kW meter's capacity
        assert lim[1] == pytest.approx(min(0.03, env.export_level * 0.03))
        assert lim[2] == pytest.approx(min(0.01, lim[1]))
    else:
        assert lim[1] / 0.03 == pytest.approx(lim[2] / 0.01)
    # the referee: pandapower at the limits is within the band, one level more is not
    assert _vm_max(net, [lim[1], lim[2]]) <= vm_max + 1e-9
    a = env.export_level + 1 / 40
    over = [min(0.03, a * 0.03), min(0.01, a * 0.03)] if rule == "equal" else [a * 0.03, a * 0.01]
    assert _vm_max(net, over) > vm_max


@pytest.mark.parametrize("rule", ["equal", "proportional"])
def test_levels_span_the_forecast_not_the_capacity(rule: str) -> None:
    """A cloudy interval: the 30 kW and 10 kW meters can export 14 and 6 kW. The levels span
    that (equal: 14 kW; proportional: 60 % of each capacity), so 8 levels step 1.75 kW, not
    3.75 kW: pandapower at the limits is within the band, one level more is not, and the
    old span's best level (over the whole capacity) exports less."""
    net = _feeder()
    pot = [0.014, 0.006]
    prob = _problem(net)
    prob["p_mw"]["sgen"] = np.array(pot)
    prob["exports"] = [Connection(device_id=1, table="sgen", row=0, coef=1.0, capacity_mw=0.03, potential_mw=pot[0],
                                  base_mw=pot[0]),
                       Connection(device_id=2, table="sgen", row=1, coef=1.0, capacity_mw=0.01, potential_mw=pot[1],
                                  base_mw=pot[1])]
    vm_max = 1.0 + 0.6 * (_vm_max(net, pot) - 1.0)
    env = compute_envelopes(BatchPowerFlow(net, kernel="numpy"), **prob, rule=rule, n_levels=8,
                            vm_min_pu=0.9, vm_max_pu=vm_max, max_loading_percent=100.0)
    assert 0 < env.export_level < 1

    def limits(a: float, top: float, span: float) -> list[float]:
        return [min(0.03, a * top), min(0.01, a * top)] if rule == "equal" else [a * span * 0.03, a * span * 0.01]

    def exports(lim: list[float]) -> list[float]:
        return [min(x, p) for x, p in zip(lim, pot, strict=True)]

    a = env.export_level
    lim = [env.export_mw[1], env.export_mw[2]]
    assert lim == pytest.approx(limits(a, 0.014, 0.6))
    assert _vm_max(net, exports(lim)) <= vm_max + 1e-9  # secure
    assert _vm_max(net, exports(limits(a + 1 / 8, 0.014, 0.6))) > vm_max  # not tighter than needed
    # the old span (over the whole capacity): its last level within these exports exports
    # less, and its next level is already over the band
    k = max(k for k in range(9) if all(np.array(exports(limits(k / 8, 0.03, 1.0))) <= np.array(exports(lim)) + 1e-12))
    assert sum(exports(limits(k / 8, 0.03, 1.0))) < sum(exports(lim))
    assert _vm_max(net, exports(limits((k + 1) / 8, 0.03, 1.0))) > vm_max


def test_negative_headroom_is_a_clear_error() -> None:
    net = _feeder()
    kw = {**_problem(net), "rule": "equal", "n_levels": 4, "vm_min_pu": 0.9, "vm_max_pu": 0.999,
          "max_loading_percent": 100.0}
    solver = BatchPowerFlow(net, kernel="numpy")
    with pytest.raises(EnvelopeError, match=r"dso\.envelopes\.negative: negative export headroom at interval 5"):
        compute_envelopes(solver, **kw, negative="error", where=" at interval 5")
    env = compute_envelopes(solver, **kw)  # negative="zero": nothing may be exported
    assert env.export_negative and set(env.export_mw.values()) == {0.0}


def test_policy_and_rule_are_checked_with_field_paths() -> None:
    with pytest.raises(ScenarioError, match=r"dso\.policy"):
        scenario_from_dict({"name": "x", "dso": {"policy": "auction"}})
    with pytest.raises(ScenarioError, match=r"dso\.envelopes\.rule"):
        scenario_from_dict({"name": "x", "dso": {"policy": "envelopes", "envelopes": {"rule": "lottery"}}})
