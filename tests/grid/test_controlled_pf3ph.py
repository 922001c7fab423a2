"""Controls on the three-phase engine: OpenDSS RegControl (IEEE 13 against OpenDSS's own
control loop) and IEEE 1547 functions per phase solved inside the batch flow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _helpers import bus_voltages_pu, opendss_solved, regcontrol_taps
from _pf3ph_nets import IEEE13, IEEE13_FIXED_TAPS

from twin.grid import BatchPowerFlow3ph, Feeder3ph
from twin.grid.controlled_pf3ph import ControlledPowerFlow3ph, Der3phDevice
from twin.grid.der_functions import DerFleet, DerFunctions
from twin.grid.regcontrol3ph import RegulatorError, regulators_from_opendss, scaled_elem_y

dss = pytest.importorskip("dss")

TAPS_AT_ONE = ("Transformer.Reg1.Taps=[1.0 1.0]", "Transformer.Reg2.Taps=[1.0 1.0]",
               "Transformer.Reg3.Taps=[1.0 1.0]", "set controlmode=off")


def _opendss(commands: tuple[str, ...], bus_names: tuple[str, ...]) -> tuple[list[int], np.ndarray]:
    """OpenDSS's own static control loop from the taps ``commands`` set: taps and voltages."""
    ckt = opendss_solved(commands)
    return regcontrol_taps(ckt), bus_voltages_pu(ckt, bus_names)


@pytest.fixture(scope="module")
def ieee13() -> tuple[Feeder3ph, list]:
    feeder = Feeder3ph.from_opendss(IEEE13, commands=TAPS_AT_ONE)
    return feeder, regulators_from_opendss(feeder, IEEE13, commands=TAPS_AT_ONE)


def test_tap_scaling_is_opendss_yprim(ieee13) -> None:
    feeder, regs = ieee13
    published = Feeder3ph.from_opendss(IEEE13, commands=IEEE13_FIXED_TAPS)
    taps = [regs[r].tap_number(t) for r, t in enumerate((1.0625, 1.05, 1.06875))]
    assert taps == [10, 8, 11]
    ys = scaled_elem_y(feeder, regs, taps)
    for reg in regs:
        assert np.allclose(ys[reg.elem], published.elem_y[reg.elem], rtol=1e-10, atol=0)


def test_ieee13_regulators_land_on_opendss_taps_and_voltages(ieee13) -> None:
    feeder, regs = ieee13
    cpf = ControlledPowerFlow3ph(feeder, regulators=regs)
    start = np.array([[0, 0, 0], [14, 2, 14]])  # the deck's start, and one from above/below the band
    res = cpf.solve(taps=start, tol=1e-10)
    assert res.converged.all()
    assert res.taps[0].tolist() == [9, 6, 9]  # OpenDSS's published solve of the deck
    assert res.control_iterations[0] == 3  # as OpenDSS's SolveSnap (ControlIterations)
    for b in range(2):
        cmds = tuple(f"Transformer.Reg{r + 1}.Taps=[1.0 {regs[r].tap_pu(int(start[b, r])):.6f}]" for r in range(3))
        ref_taps, ref_v = _opendss(cmds, feeder.bus_names)
        assert res.taps[b].tolist() == ref_taps
        ours = res.pf.vm_pu[b] * np.exp(1j * np.radians(res.pf.va_degree[b]))
        assert np.array_equal(np.isnan(ref_v), np.isnan(ours))
        assert np.nanmax(np.abs(ours - ref_v)) < 1e-6
    # regulate=False keeps the taps
    assert cpf.solve(taps=[3, 3, 3], regulate=False).taps.tolist() == [[3, 3, 3]]


def test_der_functions_per_phase_are_a_fixed_point_of_the_network(ieee13) -> None:
    feeder, regs = ieee13
    vv = DerFunctions.category("B", s_rated_mva=1.2, p_rated_mw=1.1)
    devices = [Der3phDevice(feeder.bus_index("675"), (0, 1, 2), vv),
               Der3phDevice(feeder.bus_index("680"), (0, 1, 2), vv, sensing="mean"),
               Der3phDevice(feeder.bus_index("611"), (2,), DerFunctions.category("B", s_rated_mva=0.4,
                                                                                  p_rated_mw=0.4))]
    cpf = ControlledPowerFlow3ph(feeder, devices=devices, regulators=regs)
    avail = np.array([[1.1, 1.1, 0.4], [0.0, 0.0, 0.0]])
    res = cpf.solve(der_p_avail_mw=avail, tol_pu=1e-5)
    assert res.converged.all() and cpf.n_units == 3 + 1 + 1
    # more PV: taps lower, and at the fixed point each unit's set-point is its curve at the
    # voltage an independent plain flow gives for those set-points
    assert (res.taps[0] <= res.taps[1]).all() and (res.taps[0] < res.taps[1]).any()
    fl = DerFunctions.category("B", s_rated_mva=1.2 / 3, p_rated_mw=1.1 / 3)
    for b in range(2):
        p = np.zeros((feeder.n_bus, 3))
        q = np.zeros((feeder.n_bus, 3))
        for u, (bus, w) in enumerate(zip(cpf._unit_bus, cpf._w_s, strict=True)):
            p[bus] -= res.unit_p_mw[b, u] * w
            q[bus] -= res.unit_q_mvar[b, u] * w
        plain = BatchPowerFlow3ph(dataclasses.replace(feeder, elem_y=scaled_elem_y(feeder, regs, res.taps[b])))
        vm = plain.solve(p, q, tol=1e-10).vm_pu[0]
        k675 = feeder.bus_index("675")
        for ph in range(3):  # the per-phase units of bus 675 answer their own phase's voltage
            assert res.unit_vm_pu[b, ph] == pytest.approx(vm[k675, ph], abs=1e-6)
            g_p, g_q = DerFleet.from_functions([fl]).targets(np.array([[vm[k675, ph]]]), np.array([[avail[b, 0] / 3]]))
            assert res.unit_q_mvar[b, ph] == pytest.approx(g_q[0, 0], abs=1e-5 * 0.4 + 1e-7)
            assert res.unit_p_mw[b, ph] == pytest.approx(g_p[0, 0], abs=1e-5 * 0.4 + 1e-7)
        assert res.unit_vm_pu[b, 3] == pytest.approx(np.nanmean(vm[feeder.bus_index("680")]), abs=1e-6)
    # device totals are the sums of their units; the phases at 675 differ (unbalanced feeder)
    assert res.der_q_mvar[0, 0] == pytest.approx(res.unit_q_mvar[0, :3].sum())
    assert np.ptp(res.unit_q_mvar[0, :3]) > 1e-3


def test_bad_inputs_name_the_field(ieee13) -> None:
    feeder, regs = ieee13
    with pytest.raises(RegulatorError, match=r"band_v.*narrower than one tap step"):
        dataclasses.replace(regs[0], band_v=0.5)
    vv = DerFunctions.category("B", s_rated_mva=0.1)
    with pytest.raises(ValueError, match=r"devices\[0\]\.phases: bus '611' has no phase a"):
        ControlledPowerFlow3ph(feeder, devices=[Der3phDevice(feeder.bus_index("611"), (0,), vv)])
    cpf = ControlledPowerFlow3ph(feeder, regulators=regs)
    with pytest.raises(ValueError, match=r"taps\[:, 0\]: regulator 'reg1' has taps -16..16"):
        cpf.solve(taps=[20, 0, 0])
