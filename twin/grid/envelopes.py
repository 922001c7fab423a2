"""Dynamic operating envelopes: per-connection export and import limits from one batch
power flow.

A connection is a metering point whose power the DSO may limit: an export connection
(a PV meter, a community battery discharging) or an import connection (an EV charger, a
community battery charging). For a rule and a level ``a`` in ``[0, 1]`` every connection
``c`` gets the limit

* ``proportional``: ``L_c(a) = a * span * cap_c`` (the same share of every capacity);
* ``equal``: ``L_c(a) = min(cap_c, a * top)`` (the same absolute limit for everyone,
  water-filled: a small connection keeps all of its capacity);

and ``L_c(1) = cap_c``. The levels span what the family can do next interval
(:func:`level_span`: ``u_c = min(cap_c, potential_c)``, ``top = max(u)``, ``span =
max(u / cap)``): above that nothing more moves, so all ``levels`` steps fall where the
headroom is decided (a family whose PV forecast is a third of its capacity gets its whole
resolution in that third, not a third of it). The three-phase engine
(:mod:`twin.grid.envelopes3ph`) uses the same rule and span per phase group.

At level ``a`` each export connection exports ``min(L_c(a), potential_c)`` (``potential``:
what it could export next interval, e.g. its forecast PV surplus) on top of the forecast
without trades; each import connection imports ``min(L_c(a), potential_c)``. Export levels
are screened on overvoltage and overload, import levels on undervoltage and overload
(every level of both families in **one** :meth:`BatchPowerFlow.solve` call); the envelope
is the largest level whose scenario and every lower level's is secure. Level 1 secure ->
every limit is the connection's capacity (never tighter than needed). Level 0 insecure
(the forecast without trades already violates: negative headroom) -> the limits are zero
and ``export_negative`` / ``import_negative`` say so; with ``negative="error"`` an
:class:`EnvelopeError` names the field path and the violation instead.

Sign convention: ``coef`` maps connection power (MW, exported resp. imported positive) to
the element's ``p_mw`` in the net (load/storage consumption positive, sgen generation
positive).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Connection", "EnvelopeError", "Envelopes", "compute_envelopes", "level_limits", "level_span",
           "rule_limits"]

Rule = Literal["equal", "proportional"]
_TABLES = ("load", "sgen", "storage")


class EnvelopeError(ValueError):
    """An envelope rule that cannot be met (negative headroom), with its field path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Connection:
    """One limited connection: the element it moves, its capacity and its potential (MW).

    ``base_mw``: its export (import) already in the forecast the batch starts from (a PV
    meter's forecast surplus; 0 for a device that only moves when it trades).
    """

    device_id: int
    table: str
    row: int
    coef: float
    capacity_mw: float
    potential_mw: float
    base_mw: float = 0.0


@dataclass(frozen=True, slots=True)
class Envelopes:
    """Limits (MW) by device id and the headroom levels found."""

    export_mw: dict[int, float]
    import_mw: dict[int, float]
    export_level: float
    import_level: float
    export_negative: bool
    import_negative: bool
    power_flows: int
    #: the three-phase engine (:mod:`twin.grid.envelopes3ph`): each phase group's level
    #: ("a", "b", "c", "abc"; -1: negative headroom)
    export_phase_level: dict[str, float] = dataclasses.field(default_factory=dict)
    import_phase_level: dict[str, float] = dataclasses.field(default_factory=dict)


def level_limits(cap: np.ndarray, lv: np.ndarray, rule: Rule, *, top: float, span: float) -> np.ndarray:
    """Limits of connections with capacities ``cap`` at levels ``lv`` (broadcast to (L, n)),
    the levels spanning ``top`` MW (``equal``: ``min(cap, lv * top)``) or ``span`` of each
    capacity (``proportional``: ``lv * span * cap``); level 1 is each connection's capacity."""
    if rule == "proportional":
        lim = lv * span * cap[None, :]
    elif rule == "equal":
        lim = np.minimum(cap[None, :], lv * top)
    else:
        raise ValueError(f"rule: must be 'equal' or 'proportional', got {rule!r}")
    return np.where(lv >= 1.0, cap[None, :], lim)


def level_span(capacity_mw: np.ndarray, potential_mw: np.ndarray) -> tuple[float, float]:
    """``(top, span)`` of a family's levels: what its connections can do next interval,
    ``u = min(capacity, potential)``; ``top = max(u)`` MW (``equal``), ``span = max(u / cap)``
    (``proportional``). Nothing can move (all potentials 0): the whole capacity, span 1."""
    cap = np.asarray(capacity_mw, dtype=np.float64)
    used = np.minimum(cap, np.asarray(potential_mw, dtype=np.float64))
    top = float(used.max()) if used.size else 0.0
    top = top if top > 0 else (float(cap.max()) if cap.size else 0.0)
    pos = cap > 0
    span = float((used[pos] / cap[pos]).max()) if pos.any() else 0.0
    return top, (span if span > 0 else 1.0)


def rule_limits(capacity_mw: np.ndarray, levels: np.ndarray, rule: Rule,
                potential_mw: np.ndarray | None = None) -> np.ndarray:
    """(n_levels, n_connections) limits of ``rule`` at each level, the levels spanning
    :func:`level_span` of the potentials (None: the whole capacity)."""
    cap = np.asarray(capacity_mw, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)[:, None]
    top, span = level_span(cap, cap if potential_mw is None else potential_mw)
    return level_limits(cap, lv, rule, top=top, span=span)


def _secure_prefix(ok: np.ndarray) -> int:
    """Index of the last level of the all-secure prefix (-1 if level 0 is insecure)."""
    bad = np.flatnonzero(~ok)
    return int(bad[0]) - 1 if bad.size else ok.size - 1


def compute_envelopes(
    solver: Any,
    *,
    p_mw: Mapping[str, np.ndarray],
    q_mvar: Mapping[str, np.ndarray],
    exports: Sequence[Connection],
    imports: Sequence[Connection],
    rule: Rule,
    n_levels: int,
    vm_min_pu: float,
    vm_max_pu: float,
    max_loading_percent: float,
    negative: Literal["zero", "error"] = "zero",
    field: str = "dso.envelopes",
    where: str = "",
) -> Envelopes:
    """Envelopes of the forecast ``p_mw``/``q_mvar`` (by table, row order) on ``solver``
    (a :class:`twin.grid.pf.BatchPowerFlow`): see the module docstring."""
    if n_levels < 1:
        raise ValueError(f"{field}.levels: must be >= 1, got {n_levels}")
    levels = np.linspace(0.0, 1.0, n_levels + 1)
    n = levels.size
    batch = {t: np.repeat(np.asarray(p_mw[t], dtype=np.float64)[None, :], 2 * n, axis=0) for t in _TABLES}
    fams = []
    for f, conns in enumerate((exports, imports)):
        cap = np.array([c.capacity_mw for c in conns])
        pot = np.array([c.potential_mw for c in conns])
        lim = rule_limits(cap, levels, rule, pot) if conns else np.zeros((n, 0))
        fams.append(lim)
        for j, c in enumerate(conns):
            delta = np.minimum(lim[:, j], pot[j]) - c.base_mw
            batch[c.table][f * n:(f + 1) * n, c.row] += c.coef * delta
    res = solver.solve(load_p_mw=batch["load"], load_q_mvar=q_mvar["load"],
                       sgen_p_mw=batch["sgen"], sgen_q_mvar=q_mvar["sgen"],
                       storage_p_mw=batch["storage"], storage_q_mvar=q_mvar["storage"])
    vm = np.where(res.energized, res.vm_pu, np.nan)
    with np.errstate(invalid="ignore"):
        over = np.nanmax(vm, axis=1) > vm_max_pu
        under = np.nanmin(vm, axis=1) < vm_min_pu
        loading = np.concatenate([res.line_loading_percent, res.trafo_loading_percent], axis=1)
        overload = (np.nanmax(loading, axis=1) > max_loading_percent) if loading.shape[1] else np.zeros(2 * n, bool)
    conv = res.converged
    ok_exp = conv[:n] & ~over[:n] & ~overload[:n]
    ok_imp = conv[n:] & ~under[n:] & ~overload[n:]
    out: list[tuple[dict[int, float], float, bool]] = []
    for f, (conns, ok, what) in enumerate(((exports, ok_exp, "overvoltage/overload"),
                                           (imports, ok_imp, "undervoltage/overload"))):
        i = _secure_prefix(ok)
        if i < 0 and conns and negative == "error":
            kind = "export" if f == 0 else "import"
            raise EnvelopeError(
                f"{field}.negative", f"negative {kind} headroom{where}: the forecast without "
                f"trades already has {what} (vm {np.nanmin(vm[f * n]):.4f}..{np.nanmax(vm[f * n]):.4f} pu, "
                f"band [{vm_min_pu}, {vm_max_pu}]); no {kind} limit >= 0 can be met")
        lim = fams[f]
        lims = {c.device_id: (float(lim[i, j]) if i >= 0 else 0.0) for j, c in enumerate(conns)}
        out.append((lims, float(levels[i]) if i >= 0 else -1.0, i < 0 and bool(conns)))
    return Envelopes(export_mw=out[0][0], import_mw=out[1][0], export_level=out[0][1],
                     import_level=out[1][1], export_negative=out[0][2], import_negative=out[1][2],
                     power_flows=2 * n)
