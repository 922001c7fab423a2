"""The DSO's dynamic operating envelopes in a feeder run (``dso.policy: envelopes | both``).

Before the orders of interval ``k+1`` are placed (before gate closure) the DSO takes the
forecast of ``k+1`` without trades (household loads, PV, household batteries, background
profiles), and computes per-connection limits with :func:`twin.grid.envelopes.compute_envelopes`
in one batch power flow:

* export limits of every PV household meter (its forecast surplus is what it could export)
  and of every community battery (discharging up to its power);
* import limits of every EV charger and community battery (charging up to its power).

The limits are published in Wh per interval (:class:`PublishedEnvelope`); the agents' orders
are checked against them at order time (:meth:`EnvelopePublisher.cap_orders`: an order beyond
the envelope is capped to it, one with nothing left is dropped, and a list of what was
capped is kept) so the market clears within them, and the households' physical export in
``k+1`` is limited to them (PV beyond is spilled). Household loads and PV meters' purchases
are not limited (inflexible). The batch runs on ``net`` as it is at publication: the model
passes the DSO's copy, which follows the grid simulator's OLTC tap
(:meth:`twin.agents.dso.DSOAgent.follow_taps`; the tap in force when ``k+1``'s envelopes
are computed, i.e. the one the grid's solve of ``k`` used). DER grid-support functions are not modelled in the envelope
batch (it plans on fixed power factors); the curtailment check of ``both`` still solves them.

On a three-phase grid (``grid.phases: 3``) the model passes the DSO's
:class:`twin.grid.snapshot3ph.PhaseSnapshot` (``phases``) and the envelopes are per phase
(:func:`twin.grid.envelopes3ph.compute_envelopes_3ph`): each connection on its own phase,
per-phase voltage band, per-phase loading and the voltage-unbalance limit
(``grid.vuf_max_percent``), every group of phase (a, b, c, three-phase) limited by its own
headroom; the batch starts from the grid simulator's taps (``taps``, the DSO's copy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.grid.der_spec import EnvelopeSpec
from twin.grid.envelopes import Connection, Envelopes, compute_envelopes
from twin.grid.envelopes3ph import compute_envelopes_3ph
from twin.grid.pf import BatchPowerFlow
from twin.grid.powerflow import _fingerprint
from twin.market.types import OrderIntent, Side

__all__ = ["EnvelopePublisher", "PublishedEnvelope"]


@dataclass(frozen=True, slots=True)
class PublishedEnvelope:
    """The limits of one interval, Wh by device id (devices not listed are not limited)."""

    interval: int
    export_wh: dict[int, int]
    import_wh: dict[int, int]
    envelopes: Envelopes

    def limit_wh(self, device_id: int, side: Side) -> int | None:
        table = self.export_wh if side == Side.SELL else self.import_wh
        return table.get(device_id)


class EnvelopePublisher:
    """Computes, publishes and enforces the envelopes of a feeder model."""

    def __init__(self, *, net: Any, spec: EnvelopeSpec, vm_min_pu: float, vm_max_pu: float,
                 max_loading_percent: float, interval_s: int, phases: Any = None,
                 vuf_max_percent: float = 2.0, taps: Callable[[], np.ndarray | None] | None = None) -> None:
        self.net = net
        self.phases = phases
        self.vuf_max_percent = vuf_max_percent
        self._taps = taps
        self._fingerprint = _fingerprint(net)
        self.solver = None if phases is not None else BatchPowerFlow(net, kernel="numpy")
        self.spec = spec
        self.vm_min_pu, self.vm_max_pu = vm_min_pu, vm_max_pu
        self.max_loading_percent = max_loading_percent
        self.interval_s = interval_s
        self.published: dict[int, PublishedEnvelope] = {}
        #: (interval, device, side, requested Wh, allowed Wh) of every order capped
        self.capped: list[tuple[int, int, Side, int, int]] = []

    def _wh(self, mw: float) -> int:
        return int(np.floor(mw * 1e6 * self.interval_s / 3600.0 + 1e-9))

    def publish(self, k: int, *, p_mw: dict[str, np.ndarray], q_mvar: dict[str, np.ndarray],
                exports: Sequence[Connection], imports: Sequence[Connection],
                time_s: float | None = None) -> PublishedEnvelope:
        """Compute and publish the envelope of interval ``k`` from its forecast; ``time_s``: its
        solution time (three-phase engine: a deck's time-of-day CapControls switch on it)."""
        if self.phases is not None:  # per phase on the three-phase engine, at the grid's taps
            env = compute_envelopes_3ph(
                self.phases, p_mw=p_mw, q_mvar=q_mvar, exports=exports, imports=imports,
                rule=self.spec.rule, n_levels=self.spec.levels, vm_min_pu=self.vm_min_pu,
                vm_max_pu=self.vm_max_pu, vuf_max_percent=self.vuf_max_percent,
                max_loading_percent=self.max_loading_percent, taps=self._taps() if self._taps else None,
                time_s=time_s,
                negative=self.spec.negative, field="dso.envelopes", where=f" at interval {k}")
        else:
            fp = _fingerprint(self.net)
            if fp != self._fingerprint or self.solver is None:  # a tap moved: recompile
                self.solver, self._fingerprint = BatchPowerFlow(self.net, kernel="numpy"), fp
            env = compute_envelopes(
                self.solver, p_mw=p_mw, q_mvar=q_mvar, exports=exports, imports=imports,
                rule=self.spec.rule, n_levels=self.spec.levels, vm_min_pu=self.vm_min_pu,
                vm_max_pu=self.vm_max_pu, max_loading_percent=self.max_loading_percent,
                negative=self.spec.negative, field="dso.envelopes", where=f" at interval {k}")
        pub = PublishedEnvelope(
            interval=k, export_wh={d: self._wh(v) for d, v in env.export_mw.items()},
            import_wh={d: self._wh(v) for d, v in env.import_mw.items()}, envelopes=env)
        self.published[k] = pub
        for old in [i for i in self.published if i < k - 1]:
            del self.published[old]
        return pub

    def cap_orders(self, orders: Sequence[OrderIntent]) -> list[OrderIntent]:
        """The orders within the published envelopes of their intervals (capped / dropped)."""
        out = []
        for o in orders:
            pub = self.published.get(o.interval)
            lim = pub.limit_wh(o.device_id, o.side) if pub is not None else None
            if lim is None or o.energy_wh <= lim:
                out.append(o)
                continue
            self.capped.append((o.interval, o.device_id, o.side, o.energy_wh, lim))
            if lim > 0:
                out.append(dataclasses.replace(o, energy_wh=lim))
        return out

    def export_cap_wh(self, k: int, device_ids: np.ndarray) -> np.ndarray:
        """Physical export caps of interval ``k`` for ``device_ids`` (inf where unlimited)."""
        pub = self.published.get(k)
        if pub is None:
            return np.full(len(device_ids), np.inf)
        return np.array([float(pub.export_wh.get(int(d), np.inf)) for d in device_ids])
