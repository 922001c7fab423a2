"""A small radial feeder for the fault tests: ext_grid - trafo - two laterals, a battery."""

from __future__ import annotations

from typing import Any

import pandapower as pp


def lateral_net() -> Any:
    """Buses 0 (20 kV) .. 6; lines 1-2, 2-3, 3-4 (lateral A), 2-5, 5-6 (lateral B); a battery
    at bus 3; one load per LV bus (bus i: i kW)."""
    net = pp.create_empty_network()
    for v in (20.0,) + (0.4,) * 6:
        pp.create_bus(net, vn_kv=v)
    pp.create_ext_grid(net, 0)
    pp.create_transformer(net, 0, 1, std_type="0.4 MVA 20/0.4 kV")
    for f, t in ((1, 2), (2, 3), (3, 4), (2, 5), (5, 6)):
        pp.create_line(net, f, t, length_km=0.05, std_type="NAYY 4x150 SE")
    for b in range(1, 7):
        pp.create_load(net, b, p_mw=b / 1000, q_mvar=0.0)
    pp.create_storage(net, 3, p_mw=0.0, max_e_mwh=0.05)
    return net
