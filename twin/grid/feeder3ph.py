"""Three-phase feeder data model for the phase-frame power flow (:mod:`twin.grid.pf3ph`).

A :class:`Feeder3ph` is a set of *nodes* (one per bus phase, plus internal source nodes),
*elements* that each tie a few nodes together through a primitive admittance matrix (lines,
transformers, capacitors, source impedances: anything linear), *loads* between a node and
ground (wye) or between two nodes (delta), and *sources* that fix voltages. Everything is in
per unit: node ``k`` has the base voltage ``node_vbase_kv[k]`` (phase to ground) and every
node the same base power ``sn_mva`` (per phase), so the per-unit admittance between nodes
``i`` and ``j`` is ``Y_ij[S] * vb_i * vb_j / sn``.

Two sources are possible:

* ``fixed`` nodes, whose complex voltage is given (OpenDSS's Vsource: its EMF nodes behind
  its Thevenin admittance, which is an element);
* ``sequence`` slacks (pandapower's ext_grid): the positive-sequence voltage of a
  three-phase bus is fixed, its zero- and negative-sequence voltages follow from the
  network (the ext_grid's short-circuit admittance is part of ``shunt_y``).

Build one with :meth:`Feeder3ph.from_opendss` or :meth:`Feeder3ph.from_pandapower`.
Conventions: load powers are consumption-positive (generation is a negative load); phases
a, b, c are the columns 0, 1, 2 of every ``(…, 3)`` array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = ["LOAD_CONST_I", "LOAD_CONST_PQ", "LOAD_CONST_Z", "Feeder3ph", "FeederImportError"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
ComplexArray = NDArray[np.complex128]

LOAD_CONST_PQ = 0
LOAD_CONST_I = 1
LOAD_CONST_Z = 2


class FeederImportError(ValueError):
    """A feeder source (OpenDSS deck, pandapower net) that cannot be imported; says what and where."""


@dataclass(frozen=True, eq=False)
class Feeder3ph:
    """A three-phase feeder in the phase frame, ready for :class:`twin.grid.BatchPowerFlow3ph`.

    Attributes (n_bus buses, n_node nodes, n_elem elements, n_load two-terminal loads):

    ``bus_names``        the source's own bus names;
    ``node_of``          (n_bus, 3) node index of phase a/b/c of each bus, -1 where absent;
    ``node_vbase_kv``    (n_node,) phase-to-ground base voltage of each node;
    ``sn_mva``           per-phase base power of the per-unit system;
    ``elem_names``       element names (``Class.name``), ``elem_ptr`` (n_elem + 1) slices
                         ``elem_nodes`` (conductor -> node, -1 = ground), ``elem_terminal``
                         (conductor -> terminal 0/1/...), ``elem_i_max_ka`` (conductor ->
                         rated current, NaN if none) and ``elem_y`` (one dense per-unit
                         primitive admittance matrix per element, conductor order);
    ``shunt_y``          extra node admittances not tied to an element (n_node, n_node);
    ``load_*``           loads: names, nodes ``load_i`` / ``load_j`` (-1 = ground, i.e. wye),
                         nominal power ``load_s_mva`` (complex, consumption-positive),
                         model (``LOAD_CONST_PQ`` / ``_I`` / ``_Z``), nominal voltage across
                         the load ``load_u_nom_pu`` and the band ``load_vmin_pu`` ..
                         ``load_vmax_pu`` outside which PQ and I loads become impedances
                         (OpenDSS's ``Vminpu`` / ``Vmaxpu``; between ``load_vlow_pu`` and
                         ``load_vmin_pu`` the current is interpolated as OpenDSS does);
    ``fixed_node``, ``fixed_v_pu``   ideal voltage sources;
    ``seq_slack_nodes`` (k, 3), ``seq_slack_v1_pu`` (k,)   positive-sequence slacks.
    """

    bus_names: tuple[str, ...]
    node_of: IntArray
    node_vbase_kv: FloatArray
    sn_mva: float
    elem_names: tuple[str, ...]
    elem_ptr: IntArray
    elem_nodes: IntArray
    elem_terminal: IntArray
    elem_i_max_ka: FloatArray
    elem_y: tuple[ComplexArray, ...]
    shunt_y: Any
    load_names: tuple[str, ...]
    load_i: IntArray
    load_j: IntArray
    load_s_mva: ComplexArray
    load_model: IntArray
    load_u_nom_pu: FloatArray
    load_vmin_pu: FloatArray
    load_vmax_pu: FloatArray
    load_vlow_pu: FloatArray
    fixed_node: IntArray
    fixed_v_pu: ComplexArray
    seq_slack_nodes: IntArray
    seq_slack_v1_pu: ComplexArray
    source: str = ""
    ignored: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n_node = self.node_vbase_kv.shape[0]
        if self.node_of.shape != (len(self.bus_names), 3):
            raise ValueError("node_of must be (n_bus, 3)")
        if self.elem_ptr.shape[0] != len(self.elem_names) + 1 or len(self.elem_y) != len(self.elem_names):
            raise ValueError("elem_ptr / elem_y do not match elem_names")
        for k, y in enumerate(self.elem_y):
            m = int(self.elem_ptr[k + 1] - self.elem_ptr[k])
            if y.shape != (m, m):
                raise ValueError(f"element {self.elem_names[k]}: primitive Y is {y.shape}, expected ({m}, {m})")
        for name in ("elem_nodes", "load_i", "load_j", "fixed_node", "seq_slack_nodes"):
            idx = np.asarray(getattr(self, name))
            if idx.size and (idx.min() < -1 or idx.max() >= n_node):
                raise ValueError(f"{name}: node index out of range")
        if not (self.fixed_node.size or self.seq_slack_nodes.size):
            raise ValueError("the feeder has no source (no fixed node and no slack bus)")

    # ------------------------------------------------------------------ sizes

    @property
    def n_bus(self) -> int:
        """Number of buses."""
        return len(self.bus_names)

    @property
    def n_node(self) -> int:
        """Number of nodes (bus phases and internal source nodes)."""
        return int(self.node_vbase_kv.shape[0])

    @property
    def bus_phases(self) -> NDArray[np.bool_]:
        """(n_bus, 3) True where the bus has phase a/b/c."""
        return np.asarray(self.node_of >= 0)

    def bus_index(self, name: str) -> int:
        """Index of the bus called ``name`` (case-insensitive for OpenDSS names)."""
        try:
            return self.bus_names.index(name)
        except ValueError:
            low = [b.lower() for b in self.bus_names]
            if name.lower() in low:
                return low.index(name.lower())
            raise KeyError(f"no bus {name!r} in the feeder") from None

    def y_matrix(self, elem_in_service: NDArray[np.bool_] | None = None) -> Any:
        """The per-unit node admittance matrix (CSR) of the in-service elements plus shunts."""
        rows: list[IntArray] = []
        cols: list[IntArray] = []
        vals: list[ComplexArray] = []
        for k, y in enumerate(self.elem_y):
            if elem_in_service is not None and not elem_in_service[k]:
                continue
            nodes = self.elem_nodes[self.elem_ptr[k]:self.elem_ptr[k + 1]]
            r, c = np.meshgrid(nodes, nodes, indexing="ij")
            keep = (r >= 0) & (c >= 0)
            rows.append(r[keep])
            cols.append(c[keep])
            vals.append(y[keep])
        n = self.n_node
        y_el = sp.csr_matrix(
            (np.concatenate(vals) if vals else np.zeros(0, complex),
             (np.concatenate(rows) if rows else np.zeros(0, int), np.concatenate(cols) if cols else np.zeros(0, int))),
            shape=(n, n),
        )
        return (y_el + sp.csr_matrix(self.shunt_y)).tocsr()

    # ------------------------------------------------------------------ importers

    @classmethod
    def from_opendss(cls, path: str | Path, *, commands: Sequence[str] = (), sn_mva: float = 1.0) -> Feeder3ph:
        """Import an OpenDSS deck (``.dss`` master file) through DSS-Python.

        ``commands`` run after the deck (e.g. ``"set controlmode=off"`` or fixed regulator
        taps). Every element's primitive admittance comes from the engine, so any PD element
        (Line, Transformer, Capacitor, Reactor, ...) works; loads are read from their
        parameters (model 1/2/5, wye or delta, ``Vminpu`` / ``Vmaxpu``). A deck that does not
        compile raises :class:`FeederImportError` with OpenDSS's own message (file and line);
        an element that cannot be modelled is named with its class, and nothing is returned.
        """
        from twin.grid._dss_import import import_opendss

        return import_opendss(cls, Path(path), commands=tuple(commands), sn_mva=sn_mva)

    @classmethod
    def from_pandapower(cls, net: Any) -> Feeder3ph:
        """Import a pandapower net as ``pandapower.runpp_3ph`` models it.

        Lines and transformers (with their zero-sequence data and vector groups), the
        ext_grid's short-circuit impedance and the shunts come from pandapower's own
        sequence admittance matrices, turned into the phase frame; loads and sgens (balanced
        ones split equally over the phases) and asymmetric loads/sgens are wye or delta
        constant-power loads.
        """
        from twin.grid._pp_import import import_pandapower

        return import_pandapower(cls, net)
