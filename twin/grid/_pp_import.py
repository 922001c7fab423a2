"""pandapower net -> :class:`twin.grid.feeder3ph.Feeder3ph`, exactly as ``runpp_3ph`` models it.

pandapower's three-phase power flow works in sequence components: three admittance
matrices ``Y0, Y1, Y2`` (zero-sequence line data, transformer vector groups and the
ext_grid's short-circuit impedance included) and the positive-sequence voltage of each
ext_grid bus fixed. This importer builds those matrices with pandapower's own code (on a
copy of the net), and turns them into the phase frame block by block,
``Y_abc[i, j] = A diag(Y0_ij, Y1_ij, Y2_ij) A^-1``; every branch becomes an element with its
own 6x6 block (for currents and losses), the rest (bus shunts, ext_grid impedance) stays a
shunt. Loads: ``load`` / ``sgen`` (power split equally over the phases) and
``asymmetric_load`` / ``asymmetric_sgen``, wye or delta (delta 'a' is between phases a and
b, 'b' between b and c, 'c' between c and a), constant power, ``scaling`` applied.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from twin.grid.feeder3ph import LOAD_CONST_PQ, FeederImportError

_A = np.exp(2j * np.pi / 3)
_SEQ = np.array([[1, 1, 1], [1, _A**2, _A], [1, _A, _A**2]], dtype=complex)
_SEQ_INV = np.linalg.inv(_SEQ)
_UNSUPPORTED = ("gen", "storage", "ward", "xward", "impedance", "dcline", "trafo3w", "svc", "tcsc", "ssc",
                "vsc", "motor", "asymmetric_shunt")


def _sequence_matrices(net: Any) -> tuple[Any, ...]:
    from pandapower.auxiliary import _add_pf_options, _add_ppc_options
    from pandapower.build_bus import _add_ext_grid_sc_impedance
    from pandapower.pd2ppc import _pd2ppc_recycle
    from pandapower.pypower.makeYbus import makeYbus

    net._options = {}
    _add_ppc_options(net, calculate_voltage_angles=True, trafo_model="t", check_connectivity=False,
                     mode="pf_3ph", switch_rx_ratio=2.0, init_vm_pu="flat", init_va_degree="flat",
                     enforce_p_lims=False, enforce_q_lims=False, recycle=None, voltage_depend_loads=False,
                     neglect_open_switch_branches=False)
    _add_pf_options(net, tolerance_mva=1e-8, trafo_loading="current", numba=False, ac=True, algorithm="nr",
                    max_iteration=30, only_v_results=False, use_umfpack=True, permc_spec=None,
                    lightsim2grid=False, v_debug=False)
    ppc1, ppci1 = _pd2ppc_recycle(net, 1, recycle=None)
    _, ppci2 = _pd2ppc_recycle(net, 2, recycle=None)
    _add_ext_grid_sc_impedance(net, ppci2)
    _, ppci0 = _pd2ppc_recycle(net, 0, recycle=None)
    ys = []
    for ppci in (ppci0, ppci1, ppci2):
        y, _, _ = makeYbus(ppci["baseMVA"], ppci["bus"], ppci["branch"])
        ys.append(sp.csr_matrix(y))
    return ppc1, (ppci0, ppci1, ppci2), ys


def _phase_frame(ys: list[Any]) -> Any:
    """Sequence admittance matrices (n, n) each -> phase-frame (3n, 3n), node 3k + p = bus k phase p."""
    n = ys[0].shape[0]
    seq = sp.block_diag([sp.csr_matrix(_SEQ)] * n, format="csr")
    seq_inv = sp.block_diag([sp.csr_matrix(_SEQ_INV)] * n, format="csr")
    y012 = sum(sp.kron(y, sp.csr_matrix(([1.0], ([s], [s])), shape=(3, 3)), format="csr") for s, y in enumerate(ys))
    return (seq @ y012 @ seq_inv).tocsr()


def import_pandapower(cls: Any, net_in: Any) -> Any:
    """Build the feeder (see ``Feeder3ph.from_pandapower``); the caller's net is not modified."""
    from pandapower.pypower.idx_brch import BR_STATUS, F_BUS, T_BUS
    from pandapower.pypower.idx_bus import BUS_TYPE, REF
    from pandapower.pypower.makeYbus import branch_vectors

    errors = [f"net.{el}[{idx}]: pandapower element '{el}' is not supported by the three-phase import"
              for el in _UNSUPPORTED if el in net_in and len(net_in[el]) and "in_service" in net_in[el]
              for idx in net_in[el].index[net_in[el].in_service.astype(bool)]]
    eg: Any = net_in.ext_grid[net_in.ext_grid.in_service.astype(bool)] if "ext_grid" in net_in else []
    if len(eg) == 0:
        errors.append("net.ext_grid: no in-service ext_grid (the slack of runpp_3ph)")
    if errors:
        raise FeederImportError("pandapower net cannot be imported:\n  " + "\n  ".join(errors))
    net = copy.deepcopy(net_in)
    try:
        ppc1, ppcis, ys = _sequence_matrices(net)
    except Exception as exc:
        raise FeederImportError(f"pandapower could not build the sequence networks: {exc}") from exc
    _ppci0, ppci1, _ppci2 = ppcis
    base_mva = float(ppci1["baseMVA"])
    n_ppci = ppci1["bus"].shape[0]
    lookup = np.asarray(net._pd2ppc_lookups["bus"])
    y_abc = _phase_frame(ys)

    buses = net.bus.index.to_numpy()
    bus_names = tuple(str(b) for b in buses)
    n_bus = buses.size
    vn = net.bus.vn_kv.to_numpy(dtype=float) / math.sqrt(3.0)
    node_of = np.full((n_bus, 3), -1, dtype=np.int64)
    vbase = np.zeros(3 * n_ppci)
    extra: list[float] = []
    for k, b in enumerate(buses):
        pos = int(lookup[b]) if b < lookup.size else -1
        if 0 <= pos < n_ppci and bool(net.bus.in_service.at[b]):
            node_of[k] = 3 * pos + np.arange(3)
            vbase[3 * pos:3 * pos + 3] = vn[k]
        else:  # out of service: nodes of its own, never energized
            node_of[k] = 3 * n_ppci + len(extra) + np.arange(3)
            extra.extend([vn[k]] * 3)
    n_node = 3 * n_ppci + len(extra)
    vbase = np.concatenate([vbase, np.array(extra)])

    # branches: one 6x6 element each (in-service ppc rows keep their order in ppci)
    names: list[str] = []
    for el, (a, b) in net._pd2ppc_lookups["branch"].items():
        idx = net[el].index.to_numpy()
        names.extend(f"{el}.{i}" for i in idx[: b - a])
    on = ppc1["branch"][:, BR_STATUS].real > 0
    names = [nm for nm, o in zip(names, on, strict=False) if o]
    vec = [branch_vectors(p["branch"], p["branch"].shape[0]) for p in ppcis]  # per seq: Ytt, Yff, Yft, Ytf
    br = ppci1["branch"]
    e_y, e_nodes, e_term, e_imax = [], [], [], []
    for r in range(br.shape[0]):
        f, t = int(br[r, F_BUS].real), int(br[r, T_BUS].real)
        blocks = {}
        for key, which in (("ff", 1), ("ft", 2), ("tf", 3), ("tt", 0)):
            blocks[key] = _SEQ @ np.diag([vec[s][which][r] for s in range(3)]) @ _SEQ_INV
        e_y.append(np.block([[blocks["ff"], blocks["ft"]], [blocks["tf"], blocks["tt"]]]))
        e_nodes.extend(list(3 * f + np.arange(3)) + list(3 * t + np.arange(3)))
        e_term.extend([0, 0, 0, 1, 1, 1])
        e_imax.extend([_i_max_ka(net, names[r])] * 3 + [math.nan] * 3)
    ptr = np.arange(len(e_y) + 1, dtype=np.int64) * 6
    y_el = sp.csr_matrix((3 * n_ppci, 3 * n_ppci), dtype=complex)
    if e_y:
        rows = np.concatenate([np.repeat(np.array(e_nodes[6 * k:6 * k + 6]), 6) for k in range(len(e_y))])
        cols = np.concatenate([np.tile(np.array(e_nodes[6 * k:6 * k + 6]), 6) for k in range(len(e_y))])
        y_el = sp.csr_matrix((np.concatenate([y.ravel() for y in e_y]), (rows, cols)), shape=y_el.shape)
    shunt = (y_abc - y_el).tocoo()
    keep = np.abs(shunt.data) > 1e-9 * max(1.0, float(np.abs(y_abc.data).max(initial=0.0)))
    shunt_y = sp.csr_matrix((shunt.data[keep], (shunt.row[keep], shunt.col[keep])), shape=(n_node, n_node))

    ref = np.flatnonzero(ppci1["bus"][:, BUS_TYPE] == REF)
    slack_nodes = (3 * ref[:, None] + np.arange(3)[None]).astype(np.int64)
    from pandapower.pypower.idx_bus import VA, VM

    v1 = ppci1["bus"][ref, VM] * np.exp(1j * np.radians(ppci1["bus"][ref, VA]))
    eg_v = {int(lookup[b]): (vm * np.exp(1j * np.radians(va)))
            for b, vm, va in zip(eg.bus, eg.vm_pu, eg.va_degree, strict=False)}
    v1 = np.array([eg_v.get(int(r), v) for r, v in zip(ref, v1, strict=False)], dtype=complex)

    loads = _loads(net_in, node_of, buses)
    return cls(
        bus_names=bus_names, node_of=node_of, node_vbase_kv=vbase, sn_mva=base_mva,
        elem_names=tuple(names), elem_ptr=ptr, elem_nodes=np.array(e_nodes, dtype=np.int64),
        elem_terminal=np.array(e_term, dtype=np.int64), elem_i_max_ka=np.array(e_imax, dtype=float),
        elem_y=tuple(e_y), shunt_y=shunt_y,
        load_names=tuple(loads["name"]), load_i=np.array(loads["i"], dtype=np.int64),
        load_j=np.array(loads["j"], dtype=np.int64), load_s_mva=np.array(loads["s"], dtype=complex),
        load_model=np.full(len(loads["name"]), LOAD_CONST_PQ, dtype=np.int64),
        load_u_nom_pu=np.array(loads["u"], dtype=float), load_vmin_pu=np.zeros(len(loads["name"])),
        load_vmax_pu=np.full(len(loads["name"]), np.inf), load_vlow_pu=np.zeros(len(loads["name"])),
        fixed_node=np.zeros(0, dtype=np.int64), fixed_v_pu=np.zeros(0, dtype=complex),
        seq_slack_nodes=slack_nodes, seq_slack_v1_pu=v1, source="pandapower",
    )


def _i_max_ka(net: Any, name: str) -> float:
    el, idx = name.split(".")
    if el == "line":
        row = net.line.loc[int(idx)]
        return float(row.max_i_ka * row.df * row.parallel)
    if el == "trafo":
        row = net.trafo.loc[int(idx)]
        return float(row.sn_mva / (math.sqrt(3.0) * row.vn_hv_kv) * row.parallel)
    return math.nan


def _loads(net: Any, node_of: Any, buses: Any) -> dict[str, list[Any]]:
    pos = {b: k for k, b in enumerate(buses)}
    out: dict[str, list[Any]] = {k: [] for k in ("name", "i", "j", "s", "u")}
    pairs = {"wye": [(0, -1), (1, -1), (2, -1)], "delta": [(0, 1), (1, 2), (2, 0)]}
    for el, sign in (("load", 1.0), ("sgen", -1.0), ("asymmetric_load", 1.0), ("asymmetric_sgen", -1.0)):
        if el not in net or not len(net[el]):
            continue
        tab = net[el]
        for idx, row in tab.iterrows():
            if not bool(row.in_service) or not bool(net.bus.in_service.at[row.bus]):
                continue
            typ = str(row.get("type", "wye")).lower() if el.startswith("asym") or "type" in tab else "wye"
            if typ not in pairs:
                typ = "wye"
            if el.startswith("asymmetric"):
                s = [complex(row[f"p_{p}_mw"], row[f"q_{p}_mvar"]) for p in "abc"]
            else:
                s = [complex(row.p_mw, row.q_mvar) / 3.0] * 3
            nodes = node_of[pos[row.bus]]
            for (a, b), s_ph in zip(pairs[typ], s, strict=False):
                if s_ph == 0:
                    continue
                out["name"].append(f"{el}.{idx}")
                out["i"].append(int(nodes[a]))
                out["j"].append(int(nodes[b]) if b >= 0 else -1)
                out["s"].append(sign * s_ph * float(row.scaling))
                out["u"].append(1.0 if b < 0 else math.sqrt(3.0))
    return out
