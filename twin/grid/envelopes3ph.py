"""Per-phase dynamic operating envelopes on the three-phase engine (``grid.phases: 3``).

The same connections, rules and levels as :mod:`twin.grid.envelopes`, screened on the
phase-frame flow (:meth:`twin.grid.snapshot3ph.PhaseSnapshot.solve_batch`): each connection
injects on the phase its element row sits on (a three-phase row split over the bus's
phases), and a lane is secure when every phase-to-neutral voltage is in the band (exports:
``<= vm_max_pu``; imports: ``>= vm_min_pu``), every per-phase line / trafo loading is
``<= max_loading_percent`` and no three-phase bus's voltage-unbalance factor exceeds
``vuf_max_percent`` *because of the family* (the lane's worst VUF above the limit and above
the family's level-0 lane: an export level is not blamed for the unbalance the loads make,
and an import level not for the one the forecast export makes).

Connections are grouped by phase (a, b, c, three-phase); each group gets its own level, so
a single-phase connection is limited by its own phase's headroom:

1. **common level**: every group at the same level (as on the balanced engine); the
   largest level of the all-secure prefix is ``L0`` (none: negative headroom, as there);
2. **per phase**: each group alone is raised above ``L0`` (the others at ``L0``); the
   largest level of its secure prefix is ``L_g``;
3. **together**: the groups are raised together along ``L0 + t (L_g - L0)``, ``t`` in
   ``0, 1/levels, ..., 1``; the largest ``t`` of the secure prefix is taken.

Every stage is one batch power flow of both families. Within a group the fair share is the
rule's, with the levels spanning what the family can do next interval (``u = min(cap,
potential)``; above it nothing moves, so all ``levels`` steps fall where the headroom is
decided): ``equal``: the same absolute limit ``min(cap, L * max(u))`` over the whole family
(one level means the same kW on every phase); ``proportional``: ``L * max(u / cap) * cap``.
Level 1 publishes every connection's capacity (never tighter than needed).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from twin.grid.envelopes import (
    Connection,
    EnvelopeError,
    Envelopes,
    Rule,
    _secure_prefix,
    level_limits,
    level_span,
)
from twin.grid.phase_spec import PHASE_ABC

__all__ = ["GROUP_NAMES", "compute_envelopes_3ph"]

_TABLES = ("load", "sgen", "storage")
GROUP_NAMES = ("a", "b", "c", "abc")


class _Family:
    def __init__(self, conns: Sequence[Connection], groups: np.ndarray, rule: Rule) -> None:
        self.conns = list(conns)
        self.cap = np.array([c.capacity_mw for c in conns], dtype=np.float64)
        self.pot = np.array([c.potential_mw for c in conns], dtype=np.float64)
        self.base = np.array([c.base_mw for c in conns], dtype=np.float64)
        # the levels span what the connections can do next interval (min(capacity, potential)):
        # above it nothing moves, so the resolution is spent where the headroom is decided
        self.top, self.span = level_span(self.cap, self.pot)
        self.groups = groups
        self.present = sorted({int(g) for g in groups})
        self.rule = rule

    def limits(self, group_level: np.ndarray) -> np.ndarray:
        """(L, n) limits for (L, 4) levels per group."""
        lv = group_level[:, self.groups] if self.groups.size else np.zeros((group_level.shape[0], 0))
        return level_limits(self.cap, lv, self.rule, top=self.top, span=self.span)

    def add(self, batch: dict[str, np.ndarray], lanes: slice, group_level: np.ndarray) -> None:
        lim = self.limits(group_level)
        for j, c in enumerate(self.conns):
            batch[c.table][lanes, c.row] += c.coef * (np.minimum(lim[:, j], self.pot[j]) - self.base[j])


def compute_envelopes_3ph(
    snapshot: Any,
    *,
    p_mw: Mapping[str, np.ndarray],
    q_mvar: Mapping[str, np.ndarray],
    exports: Sequence[Connection],
    imports: Sequence[Connection],
    rule: Rule,
    n_levels: int,
    vm_min_pu: float,
    vm_max_pu: float,
    vuf_max_percent: float,
    max_loading_percent: float,
    taps: np.ndarray | None = None,
    time_s: float | None = None,
    negative: Literal["zero", "error"] = "zero",
    field: str = "dso.envelopes",
    where: str = "",
) -> Envelopes:
    """Per-phase envelopes of the forecast ``p_mw``/``q_mvar`` (by table, row order) on
    ``snapshot`` (a :class:`twin.grid.snapshot3ph.PhaseSnapshot`; its regulators start from
    ``taps``, its time-of-day CapControls switch at ``time_s``): see the module docstring.
    ``Envelopes.export_level`` / ``import_level`` are
    the common levels, ``export_phase_level`` / ``import_phase_level`` each group's."""
    if n_levels < 1:
        raise ValueError(f"{field}.levels: must be >= 1, got {n_levels}")
    levels = np.linspace(0.0, 1.0, n_levels + 1)
    n = levels.size
    phase = snapshot.phase

    def groups(conns: Sequence[Connection]) -> np.ndarray:
        g = np.array([int(phase[c.table][c.row]) for c in conns], dtype=np.int64)
        return np.where(g >= PHASE_ABC, 3, g) if g.size else g

    fams = [_Family(exports, groups(exports), rule), _Family(imports, groups(imports), rule)]
    base_p = {t: np.asarray(p_mw[t], dtype=np.float64) for t in _TABLES}
    flows = 0

    def solve(plans: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Solve each family's (L_f, 4) group levels; per family: ok (L_f,) and the worst VUF (L_f,)."""
        nonlocal flows
        sizes = [pl.shape[0] for pl in plans]
        total = sum(sizes)
        if not total:  # nothing to screen
            return [(np.zeros(0, dtype=bool), np.zeros(0)) for _ in plans]
        batch = {t: np.repeat(base_p[t][None, :], total, axis=0) for t in _TABLES}
        at = 0
        for fam, pl in zip(fams, plans, strict=True):
            fam.add(batch, slice(at, at + pl.shape[0]), pl)
            at += pl.shape[0]
        res, elem = snapshot.solve_batch(batch, {t: np.asarray(q_mvar[t], dtype=np.float64) for t in _TABLES},
                                         taps=taps, time_s=time_s)
        flows += total
        vm = res.vm_pu.reshape(total, -1)
        ld = res.branch_loading_percent[:, elem[elem >= 0]].reshape(total, -1)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a lane that did not converge
            over = np.nanmax(vm, axis=1) > vm_max_pu
            under = np.nanmin(vm, axis=1) < vm_min_pu
            overload = np.nanmax(ld, axis=1) > max_loading_percent if ld.shape[1] else np.zeros(total, bool)
            vuf = np.nanmax(res.vuf_percent, axis=1) if res.vuf_percent.shape[1] else np.zeros(total)
        vuf = np.where(np.isfinite(vuf), vuf, 0.0)
        out, at = [], 0
        for f, k in enumerate(sizes):
            s = slice(at, at + k)
            at += k
            volt = over[s] if f == 0 else under[s]
            out.append((res.converged[s] & ~volt & ~overload[s], vuf[s]))
        return out

    def unbalance_ok(vuf: np.ndarray, ref: float) -> np.ndarray:
        return (vuf <= vuf_max_percent) | (vuf <= ref + 1e-9)

    # 1. the common level (level-0 lanes first: they are each family's VUF reference)
    # (a family without connections solves no lanes and sits at level 1)
    common = [np.repeat(levels[:, None], 4, axis=1) if fam.conns else np.zeros((0, 4)) for fam in fams]
    first = solve(common)
    vuf0 = [float(v[0]) if v.size else 0.0 for _, v in first]
    i0 = [_secure_prefix(ok & unbalance_ok(v, vuf0[f])) if fams[f].conns else n - 1
          for f, (ok, v) in enumerate(first)]
    group_level = [np.full(4, levels[i] if i >= 0 else 0.0) for i in i0]
    # 2. each group alone above the common level
    plans, slots = [], []
    for f, fam in enumerate(fams):
        rows, slot = [], []
        if 0 <= i0[f] < n - 1:
            for g in fam.present:
                up = np.repeat(group_level[f][None, :], n - 1 - i0[f], axis=0)
                up[:, g] = levels[i0[f] + 1:]
                rows.append(up)
                slot.append(g)
        plans.append(np.concatenate(rows) if rows else np.zeros((0, 4)))
        slots.append(slot)
    if any(pl.shape[0] for pl in plans):
        second = solve(plans)
        for f, (ok, v) in enumerate(second):
            good = ok & unbalance_ok(v, vuf0[f])
            m = n - 1 - i0[f]
            for k, g in enumerate(slots[f]):
                j = _secure_prefix(good[k * m:(k + 1) * m])
                group_level[f][g] = levels[i0[f] + 1 + j] if j >= 0 else levels[i0[f]]
        # 3. the raised groups together, scaled back along the way to their own levels
        t = np.linspace(0.0, 1.0, n)[1:]
        plans = []
        for f in range(2):
            lo = np.full(4, levels[i0[f]] if i0[f] >= 0 else 0.0)
            raised = i0[f] >= 0 and bool((group_level[f] > lo).any())
            plans.append(lo[None, :] + t[:, None] * (group_level[f] - lo)[None, :] if raised else np.zeros((0, 4)))
        if any(pl.shape[0] for pl in plans):
            third = solve(plans)
            for f, (ok, v) in enumerate(third):
                if not plans[f].shape[0]:
                    continue
                j = _secure_prefix(ok & unbalance_ok(v, vuf0[f]))
                group_level[f] = plans[f][j] if j >= 0 else np.full(4, levels[i0[f]])
    out: list[tuple[dict[int, float], float, bool, dict[str, float]]] = []
    for f, fam in enumerate(fams):
        kind = "export" if f == 0 else "import"
        if i0[f] < 0 and fam.conns and negative == "error":
            what = "overvoltage/overload" if f == 0 else "undervoltage/overload"
            raise EnvelopeError(f"{field}.negative", f"negative {kind} headroom{where}: the forecast without "
                                f"trades already has {what} on some phase; no {kind} limit >= 0 can be met")
        lim = fam.limits(group_level[f][None, :])[0] if i0[f] >= 0 else np.zeros(len(fam.conns))
        lims = {c.device_id: float(lim[j]) for j, c in enumerate(fam.conns)}
        per = {GROUP_NAMES[g]: float(group_level[f][g]) if i0[f] >= 0 else -1.0 for g in fam.present}
        out.append((lims, float(levels[i0[f]]) if i0[f] >= 0 else -1.0, i0[f] < 0 and bool(fam.conns), per))
    return Envelopes(export_mw=out[0][0], import_mw=out[1][0], export_level=out[0][1], import_level=out[1][1],
                     export_negative=out[0][2], import_negative=out[1][2], power_flows=flows,
                     export_phase_level=out[0][3], import_phase_level=out[1][3])

