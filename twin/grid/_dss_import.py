"""OpenDSS deck -> :class:`twin.grid.feeder3ph.Feeder3ph`, through DSS-Python's own engine.

Every power-delivery element's primitive admittance (``Yprim``, taps included) and terminal
connections come from the engine, so any deck's lines, transformers (any vector group,
single-phase banks, open wye/delta), capacitors and reactors are taken exactly. Loads are
read from their parameters. Controls and meters (RegControl, CapControl, EnergyMeter,
Monitor) are listed in ``Feeder3ph.ignored``: the import takes the state the deck left
(taps, capacitor steps), as a snapshot solve with ``controlmode=off`` would. RegControls and
CapControls act on the feeder through :mod:`twin.grid.regcontrol3ph` and
:mod:`twin.grid.capcontrol3ph` (:class:`twin.grid.controlled_pf3ph.ControlledPowerFlow3ph`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from twin.grid.feeder3ph import LOAD_CONST_I, LOAD_CONST_PQ, LOAD_CONST_Z, FeederImportError

_PD_CLASSES = {"line", "transformer", "capacitor", "reactor", "autotrans"}
_IGNORED_CLASSES = {"regcontrol", "capcontrol", "energymeter", "monitor", "sensor", "fuse", "recloser", "relay",
                    "swtcontrol"}
_LOAD_MODELS = {1: LOAD_CONST_PQ, 2: LOAD_CONST_Z, 5: LOAD_CONST_I}
_INJECTION_CLASSES = {"generator", "pvsystem", "storage"}


def _engine() -> Any:
    try:
        from dss import DSS
    except ImportError as exc:  # pragma: no cover - dss-python is a pinned dependency
        raise FeederImportError("reading an OpenDSS deck needs dss-python (pip install dss-python)") from exc
    ctx = DSS.NewContext()
    ctx.AllowChangeDir = False
    return ctx


def _yprim(ckt: Any) -> np.ndarray:
    raw = np.asarray(ckt.ActiveCktElement.Yprim, dtype=float)
    m = round(math.sqrt(raw.size // 2))
    return (raw[0::2] + 1j * raw[1::2]).reshape(m, m)


def import_opendss(cls: Any, path: Path, *, commands: tuple[str, ...], sn_mva: float) -> Any:
    """Compile ``path``, run ``commands`` and build the feeder (see ``Feeder3ph.from_opendss``)."""
    if not path.is_file():
        raise FeederImportError(f"OpenDSS deck {str(path)!r} not found")
    ctx = _engine()
    text = ctx.Text
    try:
        text.Command = "clear"
        text.Command = f'redirect "{path.resolve()}"'
        for cmd in commands:
            text.Command = cmd
        ckt = ctx.ActiveCircuit
        if any(e.split(".")[0].lower() in _INJECTION_CLASSES for e in ckt.AllElementNames):
            # their per-phase output is read from the solved state: solve it tightly
            text.Command = "set tolerance=1e-12"
            text.Command = "set maxiterations=1000"
        ckt.Solution.SolveNoControl()  # builds every element's Yprim in the current state
    except Exception as exc:  # DSSException: OpenDSS's own message, with file and line
        raise FeederImportError(f"OpenDSS could not compile {str(path)!r}: {exc}") from exc
    if not ckt.Name:
        raise FeederImportError(f"OpenDSS deck {str(path)!r} defines no circuit")

    errors: list[str] = []
    ignored: list[str] = []
    bus_names = list(ckt.AllBusNames)
    bus_idx = {b.lower(): k for k, b in enumerate(bus_names)}
    n_bus = len(bus_names)
    node_of = np.full((n_bus, 3), -1, dtype=np.int64)
    vbase: list[float] = []
    for k, name in enumerate(bus_names):
        ckt.SetActiveBus(name)
        kv = float(ckt.ActiveBus.kVBase)
        if not kv > 0:
            errors.append(f"bus {name}: no voltage base (add it to 'set voltagebases=[...]' and 'calcvoltagebases')")
            kv = 1.0
        for nd in ckt.ActiveBus.Nodes:
            if 1 <= nd <= 3:
                node_of[k, nd - 1] = len(vbase)
                vbase.append(kv)

    def node(bus: str, nd: int, elem: str) -> int:
        if nd == 0:
            return -1
        if not 1 <= nd <= 3:
            errors.append(f"{elem}: node {bus}.{nd} is neither a phase (1-3) nor ground (0); "
                          "ungrounded neutral conductors are not supported")
            return -1
        return int(node_of[bus_idx[bus.split(".")[0].lower()], nd - 1])

    def terminal_nodes(elem: str) -> tuple[list[int], list[int]]:
        e = ckt.ActiveCktElement
        n_cond = int(e.NumConductors)
        order = list(e.NodeOrder)
        buses = list(e.BusNames)
        nodes, term = [], []
        for t, bus in enumerate(buses):
            for c in range(n_cond):
                nodes.append(node(bus, int(order[t * n_cond + c]), elem))
                term.append(t)
        return nodes, term

    e_names: list[str] = []
    e_nodes: list[int] = []
    e_term: list[int] = []
    e_ptr = [0]
    e_imax: list[float] = []
    e_y: list[np.ndarray] = []
    loads: dict[str, list[Any]] = {k: [] for k in ("name", "i", "j", "s", "model", "u", "vmin", "vmax", "vlow")}
    fixed_node: list[int] = []
    fixed_v: list[complex] = []

    def add_element(name: str, nodes: list[int], term: list[int], y_si: np.ndarray, i_max: float) -> None:
        vb = np.array([vbase[n] if n >= 0 else 1.0 for n in nodes]) * 1e3
        e_names.append(name)
        e_nodes.extend(nodes)
        e_term.extend(term)
        e_ptr.append(len(e_nodes))
        e_imax.extend([i_max / 1e3 if t == 0 and i_max > 0 else math.nan for t in term])
        e_y.append(y_si * np.outer(vb, vb) / (sn_mva * 1e6))

    for full in ckt.AllElementNames:
        cls_name = full.split(".")[0].lower()
        ckt.SetActiveElement(full)
        elem = ckt.ActiveCktElement
        if not elem.Enabled:
            continue
        if cls_name in _IGNORED_CLASSES:
            ignored.append(full)
            continue
        if cls_name in _PD_CLASSES:
            nodes, term = terminal_nodes(full)
            add_element(full, nodes, term, _yprim(ckt), float(elem.NormalAmps))
        elif cls_name == "vsource":
            _add_vsource(ckt, full, terminal_nodes(full), node_of, bus_idx, vbase, add_element, fixed_node, fixed_v,
                         errors)
        elif cls_name == "load":
            _add_load(ckt, full, terminal_nodes(full)[0], vbase, sn_mva, loads, errors)
        elif cls_name in _INJECTION_CLASSES:
            _add_injection(ckt, full, terminal_nodes(full)[0], loads, errors)
        else:
            errors.append(f"{full}: OpenDSS class {full.split('.')[0]} cannot be modelled by the phase-frame power flow")
    if errors:
        raise FeederImportError(f"OpenDSS deck {str(path)!r} cannot be imported:\n  " + "\n  ".join(errors))
    n_node = len(vbase)
    return cls(
        bus_names=tuple(bus_names), node_of=node_of, node_vbase_kv=np.array(vbase), sn_mva=float(sn_mva),
        elem_names=tuple(e_names), elem_ptr=np.array(e_ptr, dtype=np.int64),
        elem_nodes=np.array(e_nodes, dtype=np.int64), elem_terminal=np.array(e_term, dtype=np.int64),
        elem_i_max_ka=np.array(e_imax), elem_y=tuple(e_y), shunt_y=sp.csr_matrix((n_node, n_node), dtype=complex),
        load_names=tuple(loads["name"]), load_i=np.array(loads["i"], dtype=np.int64),
        load_j=np.array(loads["j"], dtype=np.int64), load_s_mva=np.array(loads["s"], dtype=complex),
        load_model=np.array(loads["model"], dtype=np.int64), load_u_nom_pu=np.array(loads["u"], dtype=float),
        load_vmin_pu=np.array(loads["vmin"], dtype=float), load_vmax_pu=np.array(loads["vmax"], dtype=float),
        load_vlow_pu=np.array(loads["vlow"], dtype=float),
        fixed_node=np.array(fixed_node, dtype=np.int64), fixed_v_pu=np.array(fixed_v, dtype=complex),
        seq_slack_nodes=np.zeros((0, 3), dtype=np.int64), seq_slack_v1_pu=np.zeros(0, dtype=complex),
        source=str(path), ignored=tuple(ignored),
    )


def _add_vsource(ckt: Any, full: str, nt: tuple[list[int], list[int]], node_of: Any, bus_idx: dict[str, int],
                 vbase: list[float], add_element: Any, fixed_node: list[int], fixed_v: list[complex],
                 errors: list[str]) -> None:
    """A Vsource: EMF nodes (fixed) behind its Thevenin admittance (an element)."""
    nodes, _term = nt
    n_c = len(nodes) // 2
    if any(n >= 0 for n in nodes[n_c:]):
        errors.append(f"{full}: a Vsource whose bus2 is not ground is not supported")
        return
    y = _yprim(ckt)[:n_c, :n_c]
    ckt.Vsources.Name = full.split(".", 1)[1]
    n_ph = int(ckt.Vsources.Phases)
    vmag_kv = float(ckt.Vsources.BasekV) * float(ckt.Vsources.pu)
    vmag_kv = vmag_kv / math.sqrt(3.0) if n_ph == 3 else vmag_kv / (2.0 * math.sin(math.pi / n_ph)) if n_ph > 1 else vmag_kv
    ang = math.radians(float(ckt.Vsources.AngleDeg))
    internal = []
    for c in range(n_c):
        if nodes[c] < 0:
            errors.append(f"{full}: a Vsource phase connected to ground is not supported")
            return
        k = len(vbase)
        vbase.append(vbase[nodes[c]])
        internal.append(k)
        fixed_node.append(k)
        fixed_v.append(vmag_kv / vbase[k] * complex(math.cos(ang - 2 * math.pi * c / n_ph),
                                                   math.sin(ang - 2 * math.pi * c / n_ph)))
    add_element(full, internal + nodes[:n_c], [1] * n_c + [0] * n_c, np.block([[y, -y], [-y, y]]), 0.0)


def _add_injection(ckt: Any, full: str, nodes: list[int], loads: dict[str, list[Any]], errors: list[str]) -> None:
    """A Generator / PVSystem / Storage: each phase's power at the solved state, constant (wye only)."""
    elem = ckt.ActiveCktElement
    if not bool(ckt.Solution.Converged):
        errors.append(f"{full}: the deck's own snapshot solve did not converge, so its output is unknown")
        return
    try:
        conn = str(elem.Properties("conn").Val).strip().lower()
    except Exception:  # pragma: no cover - every power-conversion class has conn
        conn = "wye"
    n_ph = int(elem.NumPhases)
    if conn.startswith("d") or any(n >= 0 for n in nodes[n_ph:]):
        errors.append(f"{full}: a delta or ungrounded-neutral {full.split('.')[0]} is not supported "
                      "(only wye with a grounded neutral, as constant per-phase powers)")
        return
    pw = np.asarray(elem.Powers, dtype=float)  # kW, kvar into the element, per conductor of terminal 1
    for c in range(n_ph):
        if nodes[c] < 0:
            errors.append(f"{full}: a phase connected to ground")
            return
        loads["name"].append(full)
        loads["i"].append(nodes[c])
        loads["j"].append(-1)
        loads["s"].append(complex(pw[2 * c], pw[2 * c + 1]) / 1e3)  # consumption-positive MVA
        loads["model"].append(LOAD_CONST_PQ)
        loads["u"].append(1.0)
        loads["vmin"].append(0.0)
        loads["vmax"].append(math.inf)
        loads["vlow"].append(0.0)


def _add_load(ckt: Any, full: str, nodes: list[int], vbase: list[float], sn_mva: float,
              loads: dict[str, list[Any]], errors: list[str]) -> None:
    ld = ckt.Loads
    ld.Name = full.split(".", 1)[1]
    model = int(ld.Model)
    if model not in _LOAD_MODELS:
        errors.append(f"{full}: load model {model} is not supported (only 1 constant PQ, 2 constant Z, 5 constant I)")
        return
    n_ph = int(ld.Phases)
    delta = bool(ld.IsDelta)
    try:
        vlow = float(ckt.ActiveCktElement.Properties("vlowpu").Val)
    except Exception:  # older engines: OpenDSS's default
        vlow = 0.5
    kv = float(ld.kV)
    s_mva = complex(float(ld.kW), float(ld.kvar)) / 1e3
    if delta:
        if n_ph == 1:
            pairs = [(nodes[0], nodes[1])]
        elif n_ph == 3:
            pairs = [(nodes[0], nodes[1]), (nodes[1], nodes[2]), (nodes[2], nodes[0])]
        else:
            errors.append(f"{full}: a {n_ph}-phase delta load is not supported")
            return
        u_kv = kv
    else:
        if any(n >= 0 for n in nodes[n_ph:]):
            errors.append(f"{full}: a wye load with an ungrounded neutral is not supported")
            return
        pairs = [(nodes[p], -1) for p in range(n_ph)]
        u_kv = kv if n_ph == 1 else kv / math.sqrt(3.0)
    for i, j in pairs:
        if i < 0:
            errors.append(f"{full}: a load phase connected to ground")
            return
        loads["name"].append(full)
        loads["i"].append(i)
        loads["j"].append(j)
        loads["s"].append(s_mva / len(pairs))
        loads["model"].append(_LOAD_MODELS[model])
        loads["u"].append(u_kv / vbase[i])
        loads["vmin"].append(float(ld.Vminpu))
        loads["vmax"].append(float(ld.Vmaxpu))
        loads["vlow"].append(vlow)
