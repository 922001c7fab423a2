"""Three-phase test feeders built in code (no downloads) and the IEEE 13-bus deck's path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp

IEEE13 = Path(__file__).parent / "data" / "opendss" / "13Bus" / "IEEE13Nodeckt.dss"
# OpenDSS's "alternate solution": the published regulator taps, controls off
IEEE13_FIXED_TAPS = (
    "Transformer.Reg1.Taps=[1.0 1.0625]",
    "Transformer.Reg2.Taps=[1.0 1.0500]",
    "Transformer.Reg3.Taps=[1.0 1.06875]",
    "set controlmode=off",
)


def small_lv_net(*, sn_mva: float = 0.01) -> Any:
    """20 kV grid -> Dyn5 0.63 MVA trafo -> 6 LV buses; wye and delta, symmetric and asymmetric loads and sgens.

    ``sn_mva`` small: runpp_3ph stops on a fixed 3e-8 per-unit mismatch of ``sn_mva``, so a
    small base makes it a tight referee.
    """
    net = pp.create_empty_network(sn_mva=sn_mva)
    mv = pp.create_bus(net, vn_kv=20.0, name="mv")
    pp.create_ext_grid(net, mv, vm_pu=1.02, va_degree=0.0, s_sc_max_mva=100.0, rx_max=0.1, x0x_max=1.0,
                       r0x0_max=0.1)
    lv = [pp.create_bus(net, vn_kv=0.4, name=f"lv{k}") for k in range(6)]
    pp.create_transformer_from_parameters(
        net, mv, lv[0], sn_mva=0.63, vn_hv_kv=20.0, vn_lv_kv=0.4, vk_percent=6.0, vkr_percent=1.0,
        pfe_kw=0.0, i0_percent=0.0, shift_degree=150.0, vector_group="Dyn", vk0_percent=6.0, vkr0_percent=1.0,
        mag0_percent=100.0, mag0_rx=0.0, si0_hv_partial=0.9,
    )
    line = {"r_ohm_per_km": 0.206, "x_ohm_per_km": 0.080, "c_nf_per_km": 210.0, "max_i_ka": 0.27,
            "r0_ohm_per_km": 0.824, "x0_ohm_per_km": 0.320, "c0_nf_per_km": 210.0}
    for a, b, km in ((0, 1, 0.10), (1, 2, 0.12), (2, 3, 0.08), (1, 4, 0.15), (4, 5, 0.10)):
        pp.create_line_from_parameters(net, lv[a], lv[b], length_km=km, **line)
    pp.create_load(net, lv[2], p_mw=0.012, q_mvar=0.004)
    pp.create_asymmetric_load(net, lv[3], p_a_mw=0.008, p_b_mw=0.002, p_c_mw=0.004, q_a_mvar=0.002)
    pp.create_asymmetric_load(net, lv[5], p_a_mw=0.004, p_b_mw=0.009, p_c_mw=0.001, q_b_mvar=0.003, type="delta")
    pp.create_sgen(net, lv[4], p_mw=0.006, type="wye")  # runpp_3ph skips an sgen without a type
    pp.create_asymmetric_sgen(net, lv[5], p_a_mw=0.003, p_b_mw=0.0, p_c_mw=0.0)
    return net


def add_phase_loads(net: Any, p_mw: np.ndarray, q_mvar: np.ndarray) -> Any:
    """A copy of ``net`` with one wye asymmetric_load per bus carrying ``p_mw`` / ``q_mvar`` (n_bus, 3)."""
    out = copy.deepcopy(net)
    for k, bus in enumerate(out.bus.index):
        if np.any(p_mw[k]) or np.any(q_mvar[k]):
            pp.create_asymmetric_load(out, bus, p_a_mw=p_mw[k, 0], p_b_mw=p_mw[k, 1], p_c_mw=p_mw[k, 2],
                                      q_a_mvar=q_mvar[k, 0], q_b_mvar=q_mvar[k, 1], q_c_mvar=q_mvar[k, 2])
    return out


def runpp_3ph_voltages(net: Any) -> np.ndarray:
    """runpp_3ph's complex phase voltages (n_bus, 3) in per unit."""
    pp.runpp_3ph(net, numba=False)  # numba=True recompiles per process: ~15 s
    res = net.res_bus_3ph
    return np.stack([res[f"vm_{p}_pu"].to_numpy() * np.exp(1j * np.radians(res[f"va_{p}_degree"].to_numpy()))
                     for p in "abc"], axis=1)
