"""Hosting capacity: nested placements make violations monotone in penetration."""

from __future__ import annotations

import numpy as np
from _lvnets import lv_feeder

from twin.grid.der_functions import DerFunctions, VoltVar
from twin.grid.hosting import HostingInputs, run_hosting


def test_hosting_monotone_in_penetration_and_volt_var_helps() -> None:
    net = lv_feeder(8, pv_kw=0.0)
    T = 6
    load_p = np.tile(net.load.p_mw.to_numpy(), (T, 1))
    load_q = np.tile(net.load.q_mvar.to_numpy(), (T, 1))
    pv = np.array([0.0, 0.3, 0.7, 1.0, 0.6, 0.0])
    inp = HostingInputs(net=net, load_p_mw=load_p, load_q_mvar=load_q, pv_pu=pv,
                        sgen_rows=np.arange(8), pv_kw=np.full(8, 25.0), bus_label=net.sgen.bus.to_numpy(),
                        vm_max_pu=1.05)
    vv = DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"))
    res = run_hosting(inp, levels=[0.25, 0.5, 0.75, 1.0], samples=3, seed=1,
                      controls={"none": None, "volt_var": vv}, bus_sizes_kw=[10, 40, 80])
    for mode in ("none", "volt_var"):
        lanes = res.lanes[mode]
        vmax = lanes["vm_max_pu"].reshape(4, 3)
        viol = lanes["violation"].reshape(4, 3) > 0
        assert np.all(np.diff(vmax, axis=0) >= -1e-9)  # more PV, higher peak voltage
        assert np.all(np.diff(viol.astype(int), axis=0) >= 0)  # once violated, stays violated
        kw = lanes["pv_kw"].reshape(4, 3)
        hc = res.feeder[mode]["hosting_kw"]
        assert np.all(hc <= kw[-1]) and np.all(np.isin(hc, np.concatenate([[0.0], kw.ravel()])))
    assert np.all(res.lanes["volt_var"]["vm_max_pu"] <= res.lanes["none"]["vm_max_pu"] + 1e-9)
    assert np.all(res.feeder["volt_var"]["hosting_kw"] >= res.feeder["none"]["hosting_kw"])
    assert res.feeder["none"]["limiting"].max() == 1  # overvoltage limits this feeder
    assert np.all(res.bus["volt_var"]["hosting_kw"] >= res.bus["none"]["hosting_kw"])


def test_ev_hosting_is_monotone_and_limited_by_undervoltage_or_thermal() -> None:
    import pytest

    net = lv_feeder(8, pv_kw=0.0)
    T = 4
    load_p = np.tile(net.load.p_mw.to_numpy(), (T, 1))
    load_q = np.tile(net.load.q_mvar.to_numpy(), (T, 1))
    draw = np.zeros((T, 8))
    draw[1:3] = 1.0  # every charger draws its rating in steps 1 and 2
    draw[3, ::2] = 0.5
    inp = HostingInputs(net=net, load_p_mw=load_p, load_q_mvar=load_q, pv_pu=draw, sgen_rows=np.arange(8),
                        pv_kw=np.full(8, 22.0), bus_label=net.load.bus.to_numpy(), vm_min_pu=0.95, kind="ev")
    res = run_hosting(inp, levels=[0.25, 0.5, 0.75, 1.0], samples=3, seed=2, controls={"none": None},
                      bus_sizes_kw=[11, 44, 88])
    lanes = res.lanes["none"]
    vmin = lanes["vm_min_pu"].reshape(4, 3)
    viol = lanes["violation"].reshape(4, 3) > 0
    assert np.all(np.diff(vmin, axis=0) <= 1e-9)  # more chargers, lower voltage
    assert np.all(np.diff(viol.astype(int), axis=0) >= 0)
    assert viol[-1].all() and set(res.feeder["none"]["limiting"].tolist()) <= {2, 3}  # thermal / undervoltage
    # a charger at the feeder's end hosts less than one next to the trafo
    bh = res.bus["none"]["hosting_kw"]
    assert bh[-1] <= bh[0]
    with pytest.raises(ValueError, match="controls: EV chargers run no inverter functions"):
        run_hosting(inp, levels=[1.0], samples=1, seed=0,
                    controls={"volt_var": DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"))})
