"""Helpers shared by the grid tests: OpenDSS's solved IEEE 13 deck read back (regulator taps,
bus voltages) and the small Dyn LV feeder of the three-phase DSO tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandapower as pp
from _pf3ph_nets import IEEE13


def opendss_solved(commands: Iterable[str], deck: Any = IEEE13, *, static: bool = True) -> Any:
    """A fresh OpenDSS context with IEEE 13 loaded, ``commands`` run in order, then OpenDSS's
    static control loop (unless not ``static``) solved to 1e-12; its converged ``ActiveCircuit``."""
    import dss

    ctx = dss.DSS.NewContext()
    ctx.AllowChangeDir = False
    ctx.Text.Command = f'redirect "{deck}"'
    mode = ("set controlmode=static",) if static else ()  # not: the commands' own mode stays
    for cmd in (*commands, *mode, "set tolerance=1e-12", "set maxiterations=1000", "solve"):
        ctx.Text.Command = cmd
    ckt = ctx.ActiveCircuit
    assert ckt.Solution.Converged
    return ckt


def regcontrol_taps(ckt: Any) -> list[int]:
    """The tap number of every RegControl of a solved OpenDSS circuit, in deck order."""
    taps = []
    i = ckt.RegControls.First
    while i:
        taps.append(int(ckt.RegControls.TapNumber))
        i = ckt.RegControls.Next
    return taps


def bus_voltages_pu(ckt: Any, bus_names: tuple[str, ...]) -> np.ndarray:
    """(bus, phase) complex per-unit voltages of ``bus_names`` (NaN where a phase is absent)."""
    out = np.full((len(bus_names), 3), np.nan + 0j)
    for k, name in enumerate(bus_names):
        ckt.SetActiveBus(name)
        v = np.asarray(ckt.ActiveBus.puVoltages)
        for nd, vv in zip(ckt.ActiveBus.Nodes, v[0::2] + 1j * v[1::2], strict=False):
            if 1 <= nd <= 3:
                out[k, nd - 1] = vv
    return out


def dyn_lv_net(*, sn_mva: float = 1.0, vm_pu: float = 1.03, max_i_ka: float = 0.2, **trafo: Any) -> Any:
    """ext grid (at ``vm_pu``) -- 0.4 MVA Dyn trafo -- 300 m of cable (``max_i_ka``) -- bus 2
    (zero-sequence data on all) in a net of base ``sn_mva``; ``trafo`` adds transformer
    parameters (e.g. a tap changer). No elements at bus 2 yet."""
    net = pp.create_empty_network(sn_mva=sn_mva)
    b0 = pp.create_bus(net, vn_kv=10.0)
    b1, b2 = pp.create_bus(net, vn_kv=0.4), pp.create_bus(net, vn_kv=0.4)
    pp.create_ext_grid(net, bus=b0, vm_pu=vm_pu, s_sc_max_mva=100.0, rx_max=0.1, x0x_max=1.0, r0x0_max=0.1)
    pp.create_transformer_from_parameters(
        net, hv_bus=b0, lv_bus=b1, sn_mva=0.4, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=1.0, vk_percent=4.0,
        pfe_kw=0.0, i0_percent=0.0, vector_group="Dyn", vk0_percent=4.0, vkr0_percent=1.0, mag0_percent=100,
        mag0_rx=0, si0_hv_partial=0.9, **trafo)
    pp.create_line_from_parameters(net, from_bus=b1, to_bus=b2, length_km=0.3, r_ohm_per_km=0.32,
                                   x_ohm_per_km=0.08, c_nf_per_km=0.0, max_i_ka=max_i_ka, r0_ohm_per_km=1.2,
                                   x0_ohm_per_km=0.3, c0_nf_per_km=0.0)
    return net
