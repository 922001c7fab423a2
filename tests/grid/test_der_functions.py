"""IEEE 1547 grid-support functions: curves at breakpoints and between, lag, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.grid.der_functions import (
    ConstantPowerFactor,
    ConstantVar,
    DerFleet,
    DerFunctionError,
    DerFunctions,
    FrequencyWatt,
    VoltVar,
    VoltWatt,
    WattVar,
    first_order_lag,
)


def _fleet(*fs: DerFunctions) -> DerFleet:
    return DerFleet.from_functions(list(fs))


def test_volt_var_category_b_breakpoints_and_between() -> None:
    fl = _fleet(DerFunctions(s_rated_mva=0.01, reactive=VoltVar.category("B")))
    v = np.array([[0.85], [0.92], [0.95], [0.98], [1.0], [1.02], [1.05], [1.08], [1.2]])
    q = fl.q_target_mvar(v, np.zeros_like(v))[:, 0] / 0.01
    np.testing.assert_allclose(q, [0.44, 0.44, 0.22, 0.0, 0.0, 0.0, -0.22, -0.44, -0.44], atol=1e-12)


def test_volt_var_category_a_and_v_ref() -> None:
    a = VoltVar.category("A")
    assert a.v_pu == (0.9, 1.0, 1.0, 1.1) and a.q_pu[0] == 0.25 and a.response_time_s == 10.0
    shifted = VoltVar(v_ref_pu=1.02)
    fl = _fleet(DerFunctions(s_rated_mva=1.0, reactive=a), DerFunctions(s_rated_mva=1.0, reactive=shifted))
    q = fl.q_target_mvar(np.array([[1.05, 1.02 * 1.08]]), np.zeros((1, 2)))
    np.testing.assert_allclose(q, [[-0.125, -0.44]], atol=1e-12)


def test_volt_watt_watt_var_pf_and_const_var() -> None:
    fs = [
        DerFunctions(s_rated_mva=1.0, volt_watt=VoltWatt.category("B")),
        DerFunctions(s_rated_mva=1.0, reactive=WattVar.category("B")),
        DerFunctions(s_rated_mva=1.0, reactive=ConstantPowerFactor(pf=0.9, excitation="absorbing"), q_max_pu=1.0),
        DerFunctions(s_rated_mva=1.0, reactive=ConstantPowerFactor(pf=0.95, excitation="injecting"), q_max_pu=1.0),
        DerFunctions(s_rated_mva=1.0, reactive=ConstantVar(q_pu=-0.3)),
    ]
    fl = _fleet(*fs)
    # volt-watt: full below V1, 0.2 at V2 and above, linear between
    v = np.array([[1.0], [1.06], [1.08], [1.10], [1.2]]) * np.ones((1, 5))
    p = fl.p_limit_mw(v, np.full((5, 5), 0.8))
    np.testing.assert_allclose(p[:, 0], [0.8, 0.8, 0.6, 0.2, 0.2], atol=1e-12)
    # watt-var at 0.2, 0.5, 0.75, 1.0 pu of P
    pw = np.array([[0.1], [0.2], [0.5], [0.75], [1.0]]) * np.ones((1, 5))
    q = fl.q_target_mvar(np.ones((5, 5)), pw)
    np.testing.assert_allclose(q[:, 1], [0.0, 0.0, 0.0, -0.22, -0.44], atol=1e-12)
    np.testing.assert_allclose(q[:, 2], -pw[:, 2] * math.tan(math.acos(0.9)), atol=1e-12)
    np.testing.assert_allclose(q[:, 3], pw[:, 3] * math.tan(math.acos(0.95)), atol=1e-12)
    np.testing.assert_allclose(q[:, 4], -0.3, atol=1e-12)


def test_apparent_power_priority() -> None:
    vv = VoltVar.category("B")
    fl = _fleet(DerFunctions(s_rated_mva=1.0, reactive=vv, priority="reactive"),
                DerFunctions(s_rated_mva=1.0, reactive=vv, priority="active"))
    p, q = fl.targets(np.array([[1.1, 1.1]]), np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(q, [[-0.44, 0.0]], atol=1e-12)
    np.testing.assert_allclose(p, [[math.sqrt(1 - 0.44**2), 1.0]], atol=1e-12)


def test_frequency_watt_droop() -> None:
    fw = FrequencyWatt(f_nom_hz=50.0)
    fl = _fleet(DerFunctions(s_rated_mva=1.0, freq_watt=fw),
                DerFunctions(s_rated_mva=1.0, freq_watt=fw, p_min_pu=-1.0))
    f = np.array([50.0, 50.036, 50.536, 49.464, 60.0])
    p = fl.p_limit_mw(np.ones((5, 2)), np.full((5, 2), 0.5), f)
    # 0.5 Hz beyond the dead band at 5 % droop: 0.5 / 2.5 = 0.2 pu
    np.testing.assert_allclose(p[:, 0], [0.5, 0.5, 0.3, 0.5, 0.0], atol=1e-12)  # PV cannot rise
    np.testing.assert_allclose(p[:, 1], [0.5, 0.5, 0.3, 0.7, -1.0], atol=1e-12)  # battery can


def test_first_order_lag_reaches_90_percent_at_response_time() -> None:
    y = first_order_lag(np.zeros(3), np.ones(3), dt_s=10.0, response_time_s=np.array([10.0, 0.0, 20.0]))
    np.testing.assert_allclose(y, [0.9, 1.0, 1 - math.sqrt(0.1)], atol=1e-12)


def test_bad_curves_report_field_paths() -> None:
    with pytest.raises(DerFunctionError) as e:
        DerFunctions(s_rated_mva=1.0, reactive=VoltVar(v_pu=(0.92, 0.98, 0.97, 1.08)),
                     volt_watt=VoltWatt(p_pu=(0.5, 0.8)), path="agents.pv.der_functions")
    paths = [p for p, _ in e.value.errors]
    assert "agents.pv.der_functions.volt_var.v_pu" in paths
    assert "agents.pv.der_functions.volt_watt.p_pu" in paths
    with pytest.raises(DerFunctionError, match=r"volt_var.q_pu\[0\].*exceeds"):
        DerFunctions(s_rated_mva=1.0, reactive=VoltVar(q_pu=(0.6, 0.0, 0.0, -0.44)))
    with pytest.raises(DerFunctionError, match=r"volt_var.q_pu: must be non-increasing"):
        DerFunctions(s_rated_mva=1.0, reactive=VoltVar(q_pu=(-0.2, 0.0, 0.0, 0.2)))
    with pytest.raises(DerFunctionError, match=r"volt_watt.p_pu\[1\].*outside"):
        DerFunctions(s_rated_mva=1.0, volt_watt=VoltWatt(p_pu=(1.0, -0.5)))
    with pytest.raises(DerFunctionError, match=r"watt_var.p_pu"):
        DerFunctions(s_rated_mva=1.0, reactive=WattVar(p_pu=(0.5, 0.4, 1.0)))
    with pytest.raises(DerFunctionError, match=r"freq_watt.k_of"):
        DerFunctions(s_rated_mva=1.0, freq_watt=FrequencyWatt(k_of=0.5))
    with pytest.raises(DerFunctionError, match=r"constant_pf.pf"):
        DerFunctions(s_rated_mva=1.0, reactive=ConstantPowerFactor(pf=1.2))


def test_scenario_der_block_errors_name_the_field() -> None:
    from twin.scenario import ScenarioError, load_scenario, scenario_from_dict

    sc = load_scenario("scenarios/pv_overvoltage_voltvar.yaml")
    assert sc.agents.households.pv.der_functions is not None
    bad = {"agents": {"households": {"pv": {"der_functions": {
        "volt_var": {"v_pu": [0.92, 0.98, 1.02, 1.08], "q_pu": [0.44, 0.0, 0.1, -0.44]},
        "constant_pf": {"pf": 0.9}}}}}}
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(bad)
    assert "agents.households.pv.der_functions" in str(e.value) and "at most one reactive-power mode" in str(e.value)
    bad["agents"]["households"]["pv"]["der_functions"].pop("constant_pf")  # type: ignore[index]
    with pytest.raises(ScenarioError, match=r"agents.households.pv.der_functions.*volt_var.q_pu: must be non-increasing"):
        scenario_from_dict(bad)
