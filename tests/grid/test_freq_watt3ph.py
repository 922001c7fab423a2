"""Frequency-watt (1547 droop) on the three-phase engine: the numbers of the curve, and the
same active (and reactive) power as the balanced engine on a balanced feeder."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from twin.grid.controlled_pf import DerDevice
from twin.grid.der_functions import DerFunctions, FrequencyWatt, VoltVar
from twin.grid.der_runtime import ControlledSnapshot
from twin.grid.phase_spec import PHASE_ABC
from twin.grid.snapshot3ph import PhaseSnapshot

P_RATED = 0.03  # MW per PV system


def _balanced_net() -> object:
    """ext grid -- Dyn trafo -- 2 x 250 m of cable; a three-phase house and PV at each LV bus."""
    net = pp.create_empty_network()
    b0 = pp.create_bus(net, vn_kv=10.0)
    b1, b2, b3 = (pp.create_bus(net, vn_kv=0.4) for _ in range(3))
    pp.create_ext_grid(net, bus=b0, vm_pu=1.03, s_sc_max_mva=100.0, rx_max=0.1, x0x_max=1.0, r0x0_max=0.1)
    pp.create_transformer_from_parameters(
        net, hv_bus=b0, lv_bus=b1, sn_mva=0.4, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=1.0, vk_percent=4.0,
        pfe_kw=0.0, i0_percent=0.0, vector_group="Dyn", vk0_percent=4.0, vkr0_percent=1.0, mag0_percent=100,
        mag0_rx=0, si0_hv_partial=0.9)
    for a, b in ((b1, b2), (b2, b3)):
        pp.create_line_from_parameters(net, from_bus=a, to_bus=b, length_km=0.25, r_ohm_per_km=0.32,
                                       x_ohm_per_km=0.08, c_nf_per_km=0.0, max_i_ka=0.2, r0_ohm_per_km=1.2,
                                       x0_ohm_per_km=0.3, c0_nf_per_km=0.0)
    for b in (b2, b3):
        pp.create_load(net, bus=b, p_mw=0.0)
        pp.create_sgen(net, bus=b, p_mw=0.0)
    return net


def _devices(volt_var: bool) -> list[DerDevice]:
    fn = DerFunctions(s_rated_mva=P_RATED / 0.9, p_rated_mw=P_RATED, freq_watt=FrequencyWatt(response_time_s=0.0),
                      reactive=VoltVar(response_time_s=0.0) if volt_var else None)
    return [DerDevice("sgen", 0, fn), DerDevice("sgen", 1, fn)]


ABC = {"load": np.array([PHASE_ABC] * 2), "sgen": np.array([PHASE_ABC] * 2), "storage": np.zeros(0, np.int64)}
KW = {"load_p_mw": np.array([0.004, 0.006]), "load_q_mvar": np.array([0.001, 0.002]),
      "sgen_p_mw": np.array([0.8 * P_RATED, 0.5 * P_RATED]), "sgen_q_mvar": np.zeros(2),
      "storage_p_mw": np.zeros(0)}


CASES = [
    (50.0, (0.8, 0.5)),  # nominal: no droop
    (50.03, (0.8, 0.5)),  # inside the 36 mHz dead band
    (50.536, (0.6, 0.3)),  # 0.5 Hz beyond the dead band, 5 % droop: -0.5 / (0.05 * 50) = -0.2 pu
    (50.786, (0.5, 0.2)),  # 0.75 Hz beyond: -0.3 pu
    (51.9, (0.0544, 0.0)),  # -1.864 / 2.5 = -0.7456 pu: the second down to the PV minimum (0)
    (49.5, (0.8, 0.5)),  # under-frequency: PV cannot rise above what is available
]


def test_droop_on_three_phases_is_the_curve_and_the_balanced_engine() -> None:
    snap3 = PhaseSnapshot(_balanced_net(), phase=ABC, der_devices=_devices(False))
    snap1 = ControlledSnapshot(_balanced_net(), _devices(False), tol_pu=1e-7)
    for freq_hz, p_pu in CASES:
        st3, c3 = snap3.solve_controlled(**KW, freq_hz=freq_hz, tol_pu=1e-7)
        np.testing.assert_allclose(c3.p_mw, np.array(p_pu) * P_RATED, atol=1e-12, err_msg=f"{freq_hz} Hz")
        st1, c1 = snap1.solve(**KW, freq_hz=freq_hz)
        np.testing.assert_allclose(c3.p_mw, c1.p_mw, atol=1e-12)
        assert c3.curtailed_mw == pytest.approx(c1.curtailed_mw, abs=1e-12)
        assert c3.curtailed_mw == pytest.approx((1.3 - sum(p_pu)) * P_RATED, abs=1e-12)
        assert st3.vm_abc_pu is not None  # a balanced feeder: every phase is the balanced voltage
        np.testing.assert_allclose(st3.vm_abc_pu, np.repeat(st1.vm_pu[:, None], 3, axis=1), atol=1e-8)


def test_droop_with_volt_var_matches_the_balanced_engine() -> None:
    """Volt-var makes Q depend on the voltage the droop changes: both engines reach the same
    fixed point (within the DER tolerance) on a balanced feeder."""
    snap3 = PhaseSnapshot(_balanced_net(), phase=ABC, der_devices=_devices(True))
    snap1 = ControlledSnapshot(_balanced_net(), _devices(True), tol_pu=1e-8)
    q = []
    for freq_hz in (50.0, 50.536):
        st3, c3 = snap3.solve_controlled(**KW, freq_hz=freq_hz, tol_pu=1e-8)
        st1, c1 = snap1.solve(**KW, freq_hz=freq_hz)
        q.append(c3.q_mvar.sum())
        assert c3.converged and c1.converged
        np.testing.assert_allclose(c3.p_mw, c1.p_mw, atol=1e-8 * P_RATED)
        np.testing.assert_allclose(c3.q_mvar, c1.q_mvar, atol=1e-7 * P_RATED)
        assert st3.vm_abc_pu is not None
        np.testing.assert_allclose(st3.vm_abc_pu[:, 0], st1.vm_pu, atol=1e-7)
    # over-frequency lowers P, so the voltage at the end of the feeder, so volt-var absorbs less
    assert c3.p_mw.sum() == pytest.approx((0.6 + 0.3) * P_RATED, abs=1e-8)
    assert q[0] < q[1] < 0


def test_one_frequency_per_lane_and_bad_frequency_input() -> None:
    from twin.grid.controlled_pf3ph import ControlledPowerFlow3ph, Der3phDevice

    snap = PhaseSnapshot(_balanced_net(), phase=ABC)
    fn = _devices(False)[0].functions
    cpf = ControlledPowerFlow3ph(snap.feeder, devices=[Der3phDevice(snap.feeder.bus_index("3"), (0, 1, 2), fn)])
    p = np.zeros((snap.feeder.n_bus, 3))
    res = cpf.solve(p, p, der_p_avail_mw=[0.8 * P_RATED], freq_hz=[50.0, 50.536, 49.5], base_loads=False)
    np.testing.assert_allclose(res.der_p_mw[:, 0], np.array([0.8, 0.6, 0.8]) * P_RATED, atol=1e-12)
    with pytest.raises(ValueError, match=r"freq_hz: expected finite"):
        cpf.solve(p, p, der_p_avail_mw=[P_RATED], freq_hz=[np.nan])
    with pytest.raises(ValueError, match=r"inconsistent batch sizes: \[2, 3\]"):
        cpf.solve(p, p, der_p_avail_mw=[[P_RATED], [P_RATED]], freq_hz=[50.0, 50.1, 50.2])
