"""Tap changers: snapshot settles like pandapower's DiscreteTapControl; band, delay, limits."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pandapower.control as ppc
import pytest
from _lvnets import lv_feeder

from twin.grid.tap_control import (
    BalancedTapSolver,
    TapChanger,
    TapChangerError,
    TapController,
    oltc_from_trafo,
)


def _net() -> object:
    net = lv_feeder(6, pv_kw=35.0)
    net.trafo["tap_pos"] = 0
    return net


def test_snapshot_settles_like_pandapower() -> None:
    net = _net()
    ch = oltc_from_trafo(net, 0, v_set_pu=1.0, band_pu=0.04)
    bts = BalancedTapSolver(net, [0])
    ctl = TapController([ch])

    def solve(taps: np.ndarray) -> np.ndarray:
        return bts.solver(taps).solve(tol=1e-10).vm_pu[0, [ch.bus]]

    res = ctl.settle(solve)
    assert res.converged and res.taps[0] != 0
    ppc.DiscreteTapControl(net, 0, vm_lower_pu=0.98, vm_upper_pu=1.02, side="lv")
    pp.runpp(net, run_control=True, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert int(net.trafo.tap_pos.iat[0]) == res.taps[0]
    np.testing.assert_allclose(bts.solver(res.taps).solve(tol=1e-10).vm_pu[0], net.res_bus.vm_pu, atol=1e-7)


def test_time_series_delay_band_and_limits() -> None:
    ch = TapChanger(trafo=0, bus=1, v_set_pu=1.0, band_pu=0.03, v_per_tap_pu=-0.025, tap_min=-2, tap_max=2,
                    delay_s=60.0)
    ctl = TapController([ch])
    assert ctl.step(np.array([1.05]), dt_s=30.0).tolist() == [0]  # out of band, delay not over
    assert ctl.step(np.array([1.05]), dt_s=30.0).tolist() == [2]  # two steps bring 1.05 into band
    assert ctl.step(np.array([1.01]), dt_s=900.0).tolist() == [0]  # in band
    ctl.step(np.array([1.2]), dt_s=900.0)
    assert ctl.taps.tolist() == [2]  # at its limit
    assert ctl.operations == 2


def test_bad_tap_changer_settings() -> None:
    with pytest.raises(TapChangerError, match=r"grid.oltc.band_pu: .*narrower than one tap step"):
        TapChanger(trafo=0, bus=1, v_set_pu=1.0, band_pu=0.02, v_per_tap_pu=0.025, tap_min=-2, tap_max=2,
                   path="grid.oltc")
    with pytest.raises(TapChangerError, match=r"tap_min"):
        TapChanger(trafo=0, bus=1, v_set_pu=1.0, band_pu=0.05, v_per_tap_pu=0.025, tap_min=3, tap_max=2)
