"""Small LV feeders built in code for the DER-control and tap-changer tests."""

from __future__ import annotations

from typing import Any

import pandapower as pp


def lv_feeder(n: int = 8, *, pv_kw: float = 30.0) -> Any:
    """A weak 0.4 kV cable feeder below a 250 kVA trafo, a house with a PV at every bus."""
    net = pp.create_empty_network(sn_mva=1.0)
    mv = pp.create_bus(net, vn_kv=20.0)
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    lv = pp.create_bus(net, vn_kv=0.4)
    pp.create_transformer(net, mv, lv, std_type="0.25 MVA 20/0.4 kV")
    prev = lv
    for _ in range(n):
        b = pp.create_bus(net, vn_kv=0.4)
        pp.create_line_from_parameters(net, prev, b, length_km=0.06, r_ohm_per_km=0.32, x_ohm_per_km=0.08,
                                       c_nf_per_km=0.0, max_i_ka=0.2)
        pp.create_load(net, b, p_mw=0.002, q_mvar=0.0005)
        pp.create_sgen(net, b, p_mw=pv_kw / 1000)
        prev = b
    return net
