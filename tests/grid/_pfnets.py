"""Synthetic test networks (built in code, no downloads)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandapower as pp


def synthetic_feeder(n_bus: int = 200, *, n_ties: int = 3, n_feeders: int = 8, seed: int = 0) -> Any:
    """A 20 kV distribution grid below one 110/20 kV trafo.

    ``n_bus`` MV buses form ``n_feeders`` random branching feeders from the substation bus;
    ``n_ties`` extra closed lines between random buses make it weakly meshed (0 = radial).
    Every MV bus but the substation carries a load, every fourth also an sgen.
    """
    rng = np.random.default_rng(seed)
    net = pp.create_empty_network(sn_mva=1.0)
    hv = pp.create_bus(net, vn_kv=110.0)
    pp.create_ext_grid(net, hv, vm_pu=1.02)
    buses = [pp.create_bus(net, vn_kv=20.0) for _ in range(n_bus)]
    pp.create_transformer(net, hv, buses[0], std_type="40 MVA 110/20 kV")
    line = {"r_ohm_per_km": 0.161, "x_ohm_per_km": 0.117, "c_nf_per_km": 273.0, "max_i_ka": 0.362}
    for i in range(1, n_bus):
        parent = 0 if i <= n_feeders else i - n_feeders * int(rng.integers(1, 4))
        pp.create_line_from_parameters(
            net, buses[max(parent, 0)], buses[i], length_km=float(rng.uniform(0.1, 0.5)), **line
        )
    for _ in range(n_ties):
        a, b = rng.choice(np.arange(1, n_bus), size=2, replace=False)
        pp.create_line_from_parameters(
            net, buses[int(a)], buses[int(b)], length_km=float(rng.uniform(0.5, 2.0)), **line
        )
    scale = 30.0 / n_bus  # about 30 MW of load in total
    for i in range(1, n_bus):
        p = float(rng.uniform(0.3, 1.7)) * scale
        pp.create_load(net, buses[i], p_mw=p, q_mvar=0.4 * p)
        if i % 4 == 0:
            pp.create_sgen(net, buses[i], p_mw=float(rng.uniform(0.0, 1.0)) * scale)
    return net
