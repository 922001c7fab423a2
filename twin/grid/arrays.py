"""Compile a pandapower net once into plain numpy arrays.

This is the one place that reads pandas tables for the power flow ("tables in,
arrays through"). :func:`compile_net` returns a frozen :class:`GridArrays`; the kernels
in :mod:`twin.grid.pf` only ever see these arrays.

Model (identical to pandapower ``runpp`` with its defaults: ``trafo_model="t"``,
``calculate_voltage_angles=True``, ``trafo_loading="current"``, ``voltage_depend_loads=True``):

* **Nodes.** In-service buses joined by *closed* bus-bus switches are fused into one
  electrical node (union-find); an open bus-bus switch separates them. Out-of-service buses
  get node ``-1`` and are never energized.
* **Lines** are pi models (``r``, ``x``, ``g``, ``c`` per km, ``length_km``, ``parallel``), in
  per unit on ``net.sn_mva`` and the from-bus ``vn_kv``.
* **Two-winding transformers**: short-circuit impedance from ``vk_percent``/``vkr_percent``,
  magnetising branch from ``pfe_kw``/``i0_percent`` (T model converted to a pi as pandapower
  does), off-nominal ratio from the tap position (``tap_changer_type`` ``"Ratio"``,
  ``"Symmetrical"`` or ``"Ideal"``, on either side) and phase shift from ``shift_degree`` plus
  the tap angle.
* **Open line/trafo switches.** An open switch disconnects that end of the branch only; the
  branch stays connected at the other end, so its charging/magnetising admittance seen
  from the closed end is kept (the exact Kron reduction of pandapower's auxiliary bus).
  Both ends open, or the element out of service, takes the branch out. A line ending at an
  out-of-service bus is treated like an open switch at that end (as in pandapower).
* **Shunts** (``net.shunt``) are constant admittances. **Loads** may be ZIP
  (``const_z_*_percent``, ``const_i_*_percent``). **sgen** injections are generation-positive,
  **load** and **storage** consumption-positive (pandapower conventions).

Elements that the batch kernel does not model (``gen``, ``trafo3w``, ``impedance``, ``ward``,
``xward``, ``dcline``, ``motor``, ...) raise ``NotImplementedError`` when in service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["GridArrays", "compile_net"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ComplexArray = NDArray[np.complex128]

_UNSUPPORTED = (
    "gen",
    "trafo3w",
    "impedance",
    "ward",
    "xward",
    "dcline",
    "motor",
    "asymmetric_load",
    "asymmetric_sgen",
    "svc",
    "tcsc",
    "ssc",
    "vsc",
)


@dataclass(frozen=True, eq=False)
class GridArrays:
    """A pandapower net compiled to arrays (per unit on ``sn_mva``).

    Branch admittances are stored as 2-port matrices ``y_ff, y_ft, y_tf, y_tt`` (per unit)
    so that ``I_from = y_ff V_from + y_ft V_to`` and ``I_to = y_tf V_from + y_tt V_to``.
    A branch whose to-end (from-end) is open carries its Kron-reduced admittance in ``y_ff``
    (``y_tt``) and ``-1`` as the open node; ``*_open_*`` flags tell which end.
    Element arrays are in the row order of the net's tables.
    """

    sn_mva: float
    # buses and nodes
    bus_index: IntArray  # (n_bus,) net.bus.index
    bus_node: IntArray  # (n_bus,) electrical node of each bus, -1 if out of service
    node_vn_kv: FloatArray  # (n_node,)
    # branches: lines first, then trafos ("br_*" arrays have n_line + n_trafo rows)
    n_line: int
    n_trafo: int
    br_from: IntArray  # node at the from/hv end, -1 if that end is open
    br_to: IntArray  # node at the to/lv end, -1 if that end is open
    br_y: ComplexArray  # (n_br, 4): y_ff, y_ft, y_tf, y_tt
    br_connectable: BoolArray  # False: both ends open (can never carry power)
    br_default_in_service: BoolArray  # the net's in_service column
    br_vn_from_kv: FloatArray  # bus voltage used for the current at the from end
    br_vn_to_kv: FloatArray
    br_i_rated_ka_from: FloatArray  # rated current used for loading at each end
    br_i_rated_ka_to: FloatArray
    # shunts
    shunt_node: IntArray
    shunt_y: ComplexArray  # per unit admittance (consumption convention)
    # reference sources
    ext_grid_index: IntArray
    ext_grid_node: IntArray  # -1 when out of service
    ext_grid_v: ComplexArray  # complex voltage set point (pu)
    # injections (defaults from the net: p * scaling * in_service)
    load_node: IntArray
    load_p_mw: FloatArray
    load_q_mvar: FloatArray
    load_zip: FloatArray  # (n_load, 4): z_p, i_p, z_q, i_q fractions (0..1)
    sgen_node: IntArray
    sgen_p_mw: FloatArray
    sgen_q_mvar: FloatArray
    storage_node: IntArray
    storage_p_mw: FloatArray
    storage_q_mvar: FloatArray

    @property
    def n_bus(self) -> int:
        """Number of buses in the net (rows of ``net.bus``)."""
        return int(self.bus_index.shape[0])

    @property
    def n_node(self) -> int:
        """Number of electrical nodes after fusing closed bus-bus switches."""
        return int(self.node_vn_kv.shape[0])

    @property
    def n_branch(self) -> int:
        """Number of branches (lines + two-winding transformers)."""
        return self.n_line + self.n_trafo

    @cached_property
    def has_zip_loads(self) -> bool:
        """True when any load has a constant-impedance or constant-current share."""
        return bool(np.any(self.load_zip != 0.0))


def _col(df: Any, name: str, default: float) -> FloatArray:
    if name not in df.columns:
        return np.full(len(df), default, dtype=np.float64)
    return np.asarray(df[name].astype(float).fillna(default).to_numpy(), dtype=np.float64)


def _in_service(df: Any) -> BoolArray:
    if "in_service" not in df.columns:
        return np.ones(len(df), dtype=bool)
    return np.asarray(df["in_service"].fillna(False).to_numpy(), dtype=bool)


def _find(parent: IntArray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i


def _fuse_buses(net: Any, bus_pos: dict[int, int], bus_ok: BoolArray) -> IntArray:
    n_bus = len(bus_ok)
    parent = np.arange(n_bus, dtype=np.int64)
    sw = net.switch
    if len(sw):
        mask = (sw.et.to_numpy() == "b") & sw.closed.to_numpy().astype(bool)
        if "in_service" in sw.columns:
            mask &= sw.in_service.fillna(True).to_numpy().astype(bool)
        z = _col(sw, "z_ohm", 0.0)
        for k in np.flatnonzero(mask):
            if z[k] != 0.0:
                raise NotImplementedError(
                    f"switch {sw.index[k]}: closed bus-bus switch with z_ohm != 0 is not supported"
                )
            a = bus_pos[int(sw.bus.iat[k])]
            b = bus_pos[int(sw.element.iat[k])]
            if bus_ok[a] and bus_ok[b]:
                ra, rb = _find(parent, a), _find(parent, b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([_find(parent, i) for i in range(n_bus)], dtype=np.int64)
    node = np.full(n_bus, -1, dtype=np.int64)
    ok_roots = roots[bus_ok]
    uniq, inv = np.unique(ok_roots, return_inverse=True)
    node[bus_ok] = inv
    del uniq
    return node


def _open_ends(net: Any, et: str, table: Any, from_col: str, to_col: str) -> tuple[BoolArray, BoolArray]:
    """Which ends of lines (et='l') or trafos (et='t') have an open switch."""
    n = len(table)
    open_from = np.zeros(n, dtype=bool)
    open_to = np.zeros(n, dtype=bool)
    sw = net.switch
    if n == 0 or len(sw) == 0:
        return open_from, open_to
    mask = (sw.et.to_numpy() == et) & ~sw.closed.to_numpy().astype(bool)
    if "in_service" in sw.columns:
        mask &= sw.in_service.fillna(True).to_numpy().astype(bool)
    pos = {int(ix): i for i, ix in enumerate(table.index)}
    fb = table[from_col].to_numpy()
    tb = table[to_col].to_numpy()
    for k in np.flatnonzero(mask):
        el = int(sw.element.iat[k])
        if el not in pos:
            raise ValueError(f"switch {sw.index[k]}: element {el} not found in the {et!r} table")
        i = pos[el]
        bus = int(sw.bus.iat[k])
        if bus == tb[i]:
            open_to[i] = True
        elif bus == fb[i]:
            open_from[i] = True
        else:
            raise ValueError(f"switch {sw.index[k]}: bus {bus} is not an end of element {el}")
    return open_from, open_to


def _kron_ends(
    y: ComplexArray, open_from: BoolArray, open_to: BoolArray
) -> ComplexArray:
    """Replace 2-ports with one open end by the admittance seen from the closed end."""
    y = y.copy()
    only_to = open_to & ~open_from
    only_from = open_from & ~open_to
    with np.errstate(divide="ignore", invalid="ignore"):
        yff, yft, ytf, ytt = y[:, 0], y[:, 1], y[:, 2], y[:, 3]
        eq_from = np.where(ytt != 0, yff - yft * ytf / ytt, yff)
        eq_to = np.where(yff != 0, ytt - ytf * yft / yff, ytt)
    y[only_to] = 0.0
    y[only_to, 0] = eq_from[only_to]
    y[only_from] = 0.0
    y[only_from, 3] = eq_to[only_from]
    return y


def _two_port(ys: ComplexArray, ycf: ComplexArray, yct: ComplexArray, tap: ComplexArray) -> ComplexArray:
    """pypower ``branch_vectors``: series ys, shunts ycf/yct (totals), complex tap at from."""
    y = np.empty((ys.shape[0], 4), dtype=np.complex128)
    y[:, 0] = (ys + ycf / 2) / (tap * np.conj(tap))
    y[:, 1] = -ys / np.conj(tap)
    y[:, 2] = -ys / tap
    y[:, 3] = ys + yct / 2
    return y


def _line_arrays(net: Any, bus_pos: dict[int, int], bus_vn: FloatArray) -> dict[str, Any]:
    line = net.line
    n = len(line)
    fpos = np.array([bus_pos[int(b)] for b in line.from_bus], dtype=np.int64)
    tpos = np.array([bus_pos[int(b)] for b in line.to_bus], dtype=np.int64)
    length = _col(line, "length_km", np.nan)
    parallel = _col(line, "parallel", 1.0)
    r = _col(line, "r_ohm_per_km", np.nan)
    x = _col(line, "x_ohm_per_km", np.nan)
    c = _col(line, "c_nf_per_km", 0.0)
    g = _col(line, "g_us_per_km", 0.0)
    ins = _in_service(line)
    for name, arr, ok in (
        ("length_km", length, length > 0),
        ("parallel", parallel, parallel > 0),
        ("r_ohm_per_km", r, r >= 0),
        ("x_ohm_per_km|r_ohm_per_km", np.hypot(r, x), np.hypot(r, x) > 0),
    ):
        bad = ins & ~(np.isfinite(arr) & ok)
        if bad.any():
            raise ValueError(
                f"line {line.index[np.flatnonzero(bad)[0]]}: non-positive or missing {name}"
            )
    base_r = bus_vn[fpos] ** 2 / net.sn_mva
    z = (r + 1j * x) * length / parallel / base_r
    ys = np.zeros(n, dtype=np.complex128)
    nz = z != 0
    ys[nz] = 1.0 / z[nz]
    yc = (g * 1e-6 + 1j * 2 * math.pi * float(net.f_hz) * c * 1e-9) * length * parallel * base_r
    y = _two_port(ys, yc, yc, np.ones(n, dtype=np.complex128))
    i_max = _col(line, "max_i_ka", np.nan) * _col(line, "df", 1.0) * parallel
    return {"fpos": fpos, "tpos": tpos, "y": y, "in_service": ins, "i_from": i_max, "i_to": i_max}


def _trafo_taps(trafo: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    vnh = _col(trafo, "vn_hv_kv", np.nan).copy()
    vnl = _col(trafo, "vn_lv_kv", np.nan).copy()
    shift = _col(trafo, "shift_degree", 0.0).copy()
    for t in ("", "2"):
        if f"tap{t}_pos" not in trafo.columns:
            continue
        if f"tap{t}_dependency_table" in trafo.columns:
            dep = trafo[f"tap{t}_dependency_table"].fillna(False).to_numpy().astype(bool)
            if (dep & _in_service(trafo)).any():
                raise NotImplementedError(
                    f"trafo {trafo.index[np.flatnonzero(dep)[0]]}: tap dependency tables are not supported"
                )
        if f"tap{t}_changer_type" in trafo.columns:
            ctype = trafo[f"tap{t}_changer_type"].astype(object).where(
                trafo[f"tap{t}_changer_type"].notna(), ""
            ).to_numpy()
        elif f"tap{t}_phase_shifter" in trafo.columns:  # pandapower < 3 nets
            ps = trafo[f"tap{t}_phase_shifter"].fillna(False).to_numpy().astype(bool)
            ctype = np.where(ps, "Ideal", "Ratio").astype(object)
        else:
            continue
        side = trafo[f"tap{t}_side"].astype(object).where(trafo[f"tap{t}_side"].notna(), "").to_numpy()
        pos = _col(trafo, f"tap{t}_pos", np.nan)
        neutral = _col(trafo, f"tap{t}_neutral", np.nan)
        step_pct = _col(trafo, f"tap{t}_step_percent", np.nan)
        step_deg = _col(trafo, f"tap{t}_step_degree", np.nan)
        diff = pos - neutral
        for sname, vn, direction in (("hv", vnh, 1.0), ("lv", vnl, -1.0)):
            on_side = side == sname
            ideal = on_side & (ctype == "Ideal")
            cplx = on_side & ((ctype == "Ratio") | (ctype == "Symmetrical"))
            if ideal.any():
                deg_set = np.nan_to_num(step_deg, nan=0.0) != 0
                pct_set = np.nan_to_num(step_pct, nan=0.0) != 0
                if (ideal & deg_set & pct_set).any():
                    raise ValueError(
                        f"trafo {trafo.index[np.flatnonzero(ideal & deg_set & pct_set)[0]]}: "
                        "ideal phase shifter with both tap_step_degree and tap_step_percent"
                    )
                with np.errstate(invalid="ignore"):
                    s_ideal = np.where(
                        deg_set,
                        direction * diff * step_deg,
                        direction * 2 * np.rad2deg(np.arcsin(diff * step_pct / 100 / 2)),
                    )
                shift[ideal] += s_ideal[ideal]
            if cplx.any():
                steps = np.nan_to_num(step_pct * diff / 100, nan=0.0)
                ang = np.deg2rad(np.nan_to_num(step_deg, nan=0.0))
                du = vn * steps
                new_vn = np.sqrt((vn + du * np.cos(ang)) ** 2 + (du * np.sin(ang)) ** 2)
                s_cplx = np.rad2deg(np.arctan(direction * du * np.sin(ang) / (vn + du * np.cos(ang))))
                shift[cplx] += s_cplx[cplx]
                vn[cplx] = new_vn[cplx]
    return vnh, vnl, shift


def _trafo_arrays(net: Any, bus_pos: dict[int, int], bus_vn: FloatArray) -> dict[str, Any]:
    trafo = net.trafo
    hpos = np.array([bus_pos[int(b)] for b in trafo.hv_bus], dtype=np.int64)
    lpos = np.array([bus_pos[int(b)] for b in trafo.lv_bus], dtype=np.int64)
    ins = _in_service(trafo)
    sn = _col(trafo, "sn_mva", np.nan)
    vk = _col(trafo, "vk_percent", np.nan)
    vkr = _col(trafo, "vkr_percent", 0.0)
    pfe_mw = _col(trafo, "pfe_kw", 0.0) * 1e-3
    i0 = _col(trafo, "i0_percent", 0.0)
    parallel = _col(trafo, "parallel", 1.0)
    df = _col(trafo, "df", 1.0)
    vn_lv_rated = _col(trafo, "vn_lv_kv", np.nan)
    vn_hv_rated = _col(trafo, "vn_hv_kv", np.nan)
    for name, arr in (
        ("sn_mva", sn),
        ("vk_percent", vk),
        ("parallel", parallel),
        ("df", df),
        ("vn_hv_kv", vn_hv_rated),
        ("vn_lv_kv", vn_lv_rated),
    ):
        bad = ins & ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            raise ValueError(f"trafo {trafo.index[np.flatnonzero(bad)[0]]}: non-positive or missing {name}")
    bad = ins & ~((vkr >= 0) & (vkr <= vk))
    if bad.any():
        raise ValueError(f"trafo {trafo.index[np.flatnonzero(bad)[0]]}: vkr_percent must be in [0, vk_percent]")

    vnh, vnl, shift = _trafo_taps(trafo)
    vn_hv_bus = bus_vn[hpos]
    vn_lv_bus = bus_vn[lpos]
    ratio = (vnh / vnl) / (vn_hv_bus / vn_lv_bus)
    tap_lv = (vnl / vn_lv_bus) ** 2 * net.sn_mva
    z_sc = vk / 100.0 / sn * tap_lv
    r_sc = vkr / 100.0 / sn * tap_lv
    x_sc = np.sign(z_sc) * np.sqrt(np.maximum(z_sc**2 - r_sc**2, 0.0))
    r = r_sc / parallel
    x = x_sc / parallel
    base_z = vn_lv_bus**2 / net.sn_mva
    ym_mva = i0 / 100.0 * sn
    b_mva = -np.sqrt(np.maximum(ym_mva**2 - pfe_mw**2, 0.0))
    scale = base_z * parallel / (vn_lv_rated**2) / (vnl / vn_lv_rated) ** 2
    g = pfe_mw * scale
    b = b_mva * scale
    # T model -> pi (pandapower _wye_delta), leakage split hv/lv
    r_ratio = _col(trafo, "leakage_resistance_ratio_hv", 0.5)
    x_ratio = _col(trafo, "leakage_reactance_ratio_hv", 0.5)
    ys = 1.0 / (r + 1j * x)
    ycf = g + 1j * b
    yct = ycf.copy()
    t = (g != 0) | (b != 0)
    if t.any():
        za = r[t] * r_ratio[t] + 1j * x[t] * x_ratio[t]
        zb = r[t] * (1 - r_ratio[t]) + 1j * x[t] * (1 - x_ratio[t])
        zc = 1.0 / (g[t] + 1j * b[t])
        zsum = za * zb + za * zc + zb * zc
        ys[t] = zc / zsum
        ycf[t] = 2 * zb / zsum
        yct[t] = 2 * za / zsum
    tap = np.asarray(ratio * np.exp(1j * np.deg2rad(shift)), dtype=np.complex128)
    y = _two_port(ys, ycf, yct, tap)
    k = np.sqrt(3.0) * 100.0 / (sn * parallel * df)  # loading% = i_ka * vn_kv * k
    return {
        "fpos": hpos,
        "tpos": lpos,
        "y": y,
        "in_service": ins,
        "i_from": 100.0 / (vn_hv_rated * k),
        "i_to": 100.0 / (vn_lv_rated * k),
    }


def _element_nodes(table: Any, bus_pos: dict[int, int], bus_node: IntArray) -> IntArray:
    if len(table) == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.array([bus_pos[int(b)] for b in table.bus], dtype=np.int64)
    node = bus_node[pos].copy()
    node[~_in_service(table)] = -1
    return node


def _check_unsupported(net: Any) -> None:
    for name in _UNSUPPORTED:
        if name in net and len(net[name]) and _in_service(net[name]).any():
            raise NotImplementedError(
                f"net.{name} has in-service elements; the batch power flow supports "
                "bus, line, trafo, switch, shunt, ext_grid, load, sgen and storage"
            )


def compile_net(net: Any) -> GridArrays:
    """Compile a pandapower net into :class:`GridArrays` (called once per net).

    Raises ``ValueError`` for invalid data (non-positive impedances, dangling switches,
    conflicting ext_grid set points at one node) and ``NotImplementedError`` for
    in-service elements the kernel does not model.
    """
    _check_unsupported(net)
    bus = net.bus
    bus_index = bus.index.to_numpy().astype(np.int64)
    bus_pos = {int(ix): i for i, ix in enumerate(bus_index)}
    bus_vn = _col(bus, "vn_kv", np.nan)
    bus_ok = _in_service(bus)
    bad = bus_ok & ~(np.isfinite(bus_vn) & (bus_vn > 0))
    if bad.any():
        raise ValueError(f"bus {bus_index[np.flatnonzero(bad)[0]]}: non-positive or missing vn_kv")
    bus_node = _fuse_buses(net, bus_pos, bus_ok)
    n_node = int(bus_node.max()) + 1 if bus_node.size and bus_node.max() >= 0 else 0
    node_vn = np.zeros(n_node)
    node_vn[bus_node[bus_ok]] = bus_vn[bus_ok]

    parts = []
    for et, tab, fcol, tcol, build in (
        ("l", net.line, "from_bus", "to_bus", _line_arrays),
        ("t", net.trafo, "hv_bus", "lv_bus", _trafo_arrays),
    ):
        if len(tab) == 0:
            continue
        a = build(net, bus_pos, bus_vn)
        open_f, open_t = _open_ends(net, et, tab, fcol, tcol)
        f_oos = ~bus_ok[a["fpos"]]
        t_oos = ~bus_ok[a["tpos"]]
        if et == "l":  # pandapower: a line at an out-of-service bus keeps its other end
            open_f |= f_oos
            open_t |= t_oos
            connectable = ~(open_f & open_t)
        else:  # a trafo at an out-of-service bus is out
            connectable = ~(open_f & open_t) & ~f_oos & ~t_oos
        y = _kron_ends(a["y"], open_f, open_t)
        fnode = np.where(open_f | f_oos, -1, bus_node[a["fpos"]])
        tnode = np.where(open_t | t_oos, -1, bus_node[a["tpos"]])
        parts.append(
            {
                "f": fnode,
                "t": tnode,
                "y": y,
                "conn": connectable,
                "ins": a["in_service"],
                "vf": bus_vn[a["fpos"]],
                "vt": bus_vn[a["tpos"]],
                "if": a["i_from"],
                "it": a["i_to"],
            }
        )

    def cat(key: str, dtype: Any) -> Any:
        if not parts:
            return np.zeros((0, 4) if key == "y" else 0, dtype=dtype)
        return np.concatenate([p[key] for p in parts]).astype(dtype)

    # shunts
    sh = net.shunt if "shunt" in net else None
    if sh is not None and len(sh):
        sh_node = _element_nodes(sh, bus_pos, bus_node)
        spos = np.array([bus_pos[int(b)] for b in sh.bus], dtype=np.int64)
        vn_sh = _col(sh, "vn_kv", np.nan)
        vn_sh = np.where(np.isnan(vn_sh), bus_vn[spos], vn_sh)
        if "step_dependency_table" in sh.columns and sh.step_dependency_table.fillna(False).astype(bool).any():
            raise NotImplementedError("shunt step dependency tables are not supported")
        step = _col(sh, "step", 1.0)
        v_ratio = (bus_vn[spos] / vn_sh) ** 2
        sh_y = (_col(sh, "p_mw", 0.0) - 1j * _col(sh, "q_mvar", 0.0)) * step * v_ratio / net.sn_mva
        sh_y = sh_y.astype(np.complex128)
    else:
        sh_node = np.zeros(0, dtype=np.int64)
        sh_y = np.zeros(0, dtype=np.complex128)

    # ext grids
    eg = net.ext_grid
    eg_node = _element_nodes(eg, bus_pos, bus_node)
    eg_v = (_col(eg, "vm_pu", 1.0) * np.exp(1j * np.deg2rad(_col(eg, "va_degree", 0.0)))).astype(
        np.complex128
    )
    for nd in np.unique(eg_node[eg_node >= 0]):
        vs = eg_v[eg_node == nd]
        if np.any(np.abs(vs - vs[0]) > 1e-12):
            raise ValueError(
                f"ext_grids {eg.index[eg_node == nd].tolist()} share a node but have different set points"
            )

    def inj(table_name: str) -> tuple[IntArray, FloatArray, FloatArray]:
        tab = net[table_name] if table_name in net else None
        if tab is None or len(tab) == 0:
            z = np.zeros(0)
            return np.zeros(0, dtype=np.int64), z, z
        node = _element_nodes(tab, bus_pos, bus_node)
        sc = _col(tab, "scaling", 1.0) * _in_service(tab)
        return node, _col(tab, "p_mw", 0.0) * sc, _col(tab, "q_mvar", 0.0) * sc

    load_node, load_p, load_q = inj("load")
    sgen_node, sgen_p, sgen_q = inj("sgen")
    sto_node, sto_p, sto_q = inj("storage")
    if len(net.load):
        zip_ = np.stack(
            [
                _col(net.load, c, 0.0) / 100.0
                for c in ("const_z_p_percent", "const_i_p_percent", "const_z_q_percent", "const_i_q_percent")
            ],
            axis=1,
        )
        if np.any(zip_[:, 0] + zip_[:, 1] > 1 + 1e-12) or np.any(zip_[:, 2] + zip_[:, 3] > 1 + 1e-12):
            raise ValueError("load: const_z_*_percent + const_i_*_percent must not exceed 100")
    else:
        zip_ = np.zeros((0, 4))

    return GridArrays(
        sn_mva=float(net.sn_mva),
        bus_index=bus_index,
        bus_node=bus_node,
        node_vn_kv=node_vn,
        n_line=len(net.line),
        n_trafo=len(net.trafo),
        br_from=cat("f", np.int64),
        br_to=cat("t", np.int64),
        br_y=cat("y", np.complex128),
        br_connectable=cat("conn", bool),
        br_default_in_service=cat("ins", bool),
        br_vn_from_kv=cat("vf", np.float64),
        br_vn_to_kv=cat("vt", np.float64),
        br_i_rated_ka_from=cat("if", np.float64),
        br_i_rated_ka_to=cat("it", np.float64),
        shunt_node=sh_node,
        shunt_y=sh_y,
        ext_grid_index=eg.index.to_numpy().astype(np.int64),
        ext_grid_node=eg_node,
        ext_grid_v=eg_v,
        load_node=load_node,
        load_p_mw=load_p,
        load_q_mvar=load_q,
        load_zip=zip_.astype(np.float64),
        sgen_node=sgen_node,
        sgen_p_mw=sgen_p,
        sgen_q_mvar=sgen_q,
        storage_node=sto_node,
        storage_p_mw=sto_p,
        storage_q_mvar=sto_q,
    )
