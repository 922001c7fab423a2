"""The VPP's frequency-regulation desk (``market.services.ancillary``): headroom, the TSO's
procurement, the resources following the regulation signal.

At step ``k`` of the feeder model, after the TSO's signal for ``k + 1`` and before the orders
for ``k + 1`` (:meth:`RegulationDesk.reserve`):

* each community battery offers ``storage_share`` of its power limit, cut to what it can
  hold for a whole interval of full up or down regulation inside its SOC band (above its DR
  reserve, ``community_storage.dr_reserve_soc``, when it keeps one) from its state now (:func:`~twin.services.ancillary.rules.storage_headroom_kw`); each household's
  flexible load offers, around its planned run of ``k + 1``, what it can pause (its plan
  less what the comfort window's end forces) and what it can add (power and energy left),
  the smaller of both, at most ``flex_share`` of its power; each plugged EV charger offers,
  around the even spread of its need it charges anyway, what it can drop (down to what its
  departure forces) and what it can add (charger and need), the smaller, at most
  ``ev_share`` of its power;
* the TSO procures ``min(requested, offered)`` pro rata in whole watts
  (:func:`~twin.services.ancillary.rules.procure`);
* the procured capacity is withheld from the energy market: a battery's orders and its
  market dispatch keep ``capacity x interval`` of energy free at both ends of its SOC band
  and of its power limit (:attr:`CommunityStorage.reserved_w`); an EV's orders leave it
  free below its charger and need (:attr:`EVFleet.reserved_wh`); a flexible load's headroom
  is energy it does not buy. An interval the TSO called demand response for has no
  regulation (DR takes the resources).

At step ``k + 1``, after the market dispatch (:meth:`RegulationDesk.follow`): every resource
follows ``signal x capacity`` each ``step_s`` (quasi-static: energy per step, no ramp limit);
a battery from its state after the market's energy, as far as its SOC band allows; a flexible
load moves its consumption (up regulation = consumes less; the energy stays to run later in
the window); an EV charger moves its charging around what the market made it charge, down to
what its departure forces and up to its charger and need (a V2G seller does not regulate). The meters read the regulation energy too. The report of ``k`` (capacity,
mileage, precision score per resource) goes to the market with the meter readings and is
settled by the ancillary service.

The optional upward reserve (``reserve``, :mod:`twin.services.ancillary.reserve`): at
:meth:`RegulationDesk.reserve`, after regulation, each battery offers what it can still
discharge for the whole interval on top of its regulation capacity; the TSO procures it pro
rata and it is withheld from the market's discharge side (:attr:`CommunityStorage.reserved_up_w`).
At :meth:`RegulationDesk.follow`, after the regulation signal, an activated interval has every
reserving battery discharge its reserve capacity for the whole interval (as far as its SOC
band above the DR reserve allows); the report carries capacity and delivered energy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.agents.ev import EVDispatch, EVFleet
from twin.agents.household import HouseholdDispatch, Households
from twin.agents.storage import CommunityStorage, StorageDispatch
from twin.services.ancillary.reserve import activations, reserve_headroom_kw
from twin.services.ancillary.rules import (
    PPM,
    dispatch,
    load_signal,
    performance_score,
    procure,
    storage_headroom_kw,
    synthetic_signal,
)

__all__ = ["RegulationDesk", "RegulationReport", "regulation_desk"]

#: a stream of its own (the model's generator is not advanced: runs without it are unchanged)
_SIGNAL_STREAM = 0xA5C
_RESERVE_STREAM = 0xA5D
_METER_MARGIN_WH = 2.0


@dataclass(frozen=True, slots=True)
class RegulationReport:
    """One interval of regulation, sent to the market with the meter readings."""

    interval: int
    requested_w: int  # the TSO's request
    offered_w: int  # the VPP's headroom
    signal_mean: float
    #: per resource: device_id, kind, capacity_w, mileage_w, score_ppm, requested_wh, delivered_wh
    resources: list[dict[str, Any]]
    #: the upward reserve product (market.services.ancillary.reserve): the TSO's request, the
    #: batteries' headroom after regulation, whether it activated it, and per battery:
    #: device_id, kind, capacity_w, requested_wh, energy_wh (delivered, whole Wh)
    reserve_requested_w: int = 0
    reserve_offered_w: int = 0
    reserve_activated: bool = False
    reserve: list[dict[str, Any]] = field(default_factory=list)

    def encode(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def decode(cls, data: dict[str, Any]) -> RegulationReport:
        return cls(**data)


class RegulationDesk:
    """See the module docstring; one per model when the service is enabled."""

    def __init__(self, *, spec: Any, households: Households, storage: CommunityStorage,
                 evs: EVFleet, interval_s: int, n_intervals: int, seed: int) -> None:
        self.spec = spec
        self.hh, self.cs, self.ev = households, storage, evs
        self.interval_s = interval_s
        self.step_s = int(spec.signal.step_s)
        sig = spec.signal
        if sig.file is not None:
            self.signal = load_signal(sig.file, n_intervals=n_intervals, interval_s=interval_s,
                                      step_s=self.step_s, field="market.services.ancillary.signal.file")
        else:
            self.signal = synthetic_signal(np.random.default_rng((seed, _SIGNAL_STREAM)),
                                           n_intervals=n_intervals, interval_s=interval_s,
                                           step_s=self.step_s, tau_s=sig.tau_s, sigma=sig.sigma)
        self.requested_kw = float(spec.requested_kw or 0.0)
        self._cs_w: dict[int, np.ndarray] = {}  # interval -> procured W per battery
        self._hh_w: dict[int, np.ndarray] = {}  # interval -> procured W per household
        self._ev_w: dict[int, np.ndarray] = {}  # interval -> procured W per EV charger
        self._offered: dict[int, int] = {}
        res = spec.reserve
        self.reserve_kw = float(res.requested_kw or 0.0) if res.enabled else 0.0
        self.activated = activations(np.random.default_rng((seed, _RESERVE_STREAM)), n_intervals=n_intervals,
                                     probability=res.activation_probability, listed=res.activated_intervals)
        self._rs_w: dict[int, np.ndarray] = {}  # interval -> reserve W per battery
        self._rs_offered: dict[int, int] = {}

    # -------------------------------------------------------------------- step k: k + 1
    def reserve(self, k: int, *, dr: bool) -> None:
        """Headroom for ``k``, the TSO's procurement, the batteries' reservation."""
        hh, cs = self.hh, self.cs
        h = self.interval_s / 3600.0
        cs_kw = np.zeros(cs.n)
        hh_kw = np.zeros(hh.n)
        if not dr:
            if cs.n and self.spec.storage_share > 0:
                cs_kw = np.minimum(
                    storage_headroom_kw(energy_wh=cs.energy_wh, capacity_wh=np.full(cs.n, cs.capacity_wh),
                                        power_kw=cs.capacity_w / 1000.0, soc_min=cs.dr_reserve,
                                        soc_max=cs.soc_max, interval_s=self.interval_s, eta=cs.eta),
                    self.spec.storage_share * cs.capacity_w / 1000.0)
            if hh.has_flex.any() and self.spec.flex_share > 0 and hh.flex_inside[k]:
                plan, forced = hh._flex_plan(k)
                rem = hh._flex_at(k)
                up = plan - np.minimum(forced, plan)
                # 2 Wh below the flexible load's power: the meter's registered capacity is
                # peak load + flexible power, whole Wh after rounding
                down = np.minimum(hh.flex_power_wh - plan, rem - plan) - _METER_MARGIN_WH
                c_wh = np.minimum(np.minimum(up, down), self.spec.flex_share * hh.flex_power_wh)
                hh_kw = np.where(hh.has_flex, np.clip(c_wh, 0.0, None), 0.0) / h / 1000.0
        ev = self.ev
        ev_kw = np.zeros(ev.n)
        if not dr and ev.n and self.spec.ev_share > 0:
            least, most, must = ev.regulation_band_wh(k)
            c_wh = np.minimum(np.minimum(least - must, most - least), self.spec.ev_share * ev.cap_wh)
            ev_kw = np.clip(c_wh, 0.0, None) / h / 1000.0
        head = {int(d): float(v) for d, v in zip(cs.device_id, cs_kw, strict=True) if v > 0}
        head |= {int(d): float(v) for d, v in zip(hh.device_id, hh_kw, strict=True) if v > 0}
        head |= {int(d): float(v) for d, v in zip(ev.device_id, ev_kw, strict=True) if v > 0}
        got = procure(self.requested_kw, head) if head else {}
        self._offered[k] = sum(int(np.floor(v * 1000)) for v in head.values())
        self._cs_w[k] = np.array([got.get(int(d), 0) for d in cs.device_id], dtype=np.int64)
        self._hh_w[k] = np.array([got.get(int(d), 0) for d in hh.device_id], dtype=np.int64)
        self._ev_w[k] = np.array([got.get(int(d), 0) for d in ev.device_id], dtype=np.int64)
        cs.reserved_w = self._cs_w[k].copy()
        ev.reserved_wh = self._ev_w[k] * h
        if self.reserve_kw > 0 and not dr and cs.n:  # upward reserve on top of regulation
            rs_kw = np.minimum(
                reserve_headroom_kw(energy_wh=cs.energy_wh, capacity_wh=cs.capacity_wh,
                                    power_kw=cs.capacity_w / 1000.0, regulation_kw=self._cs_w[k] / 1000.0,
                                    soc_min=cs.dr_reserve, interval_s=self.interval_s, eta=cs.eta),
                self.spec.reserve.storage_share * cs.capacity_w / 1000.0)
            rs_head = {int(d): float(v) for d, v in zip(cs.device_id, rs_kw, strict=True) if v > 0}
            rs_got = procure(self.reserve_kw, rs_head) if rs_head else {}
            self._rs_offered[k] = sum(int(np.floor(v * 1000)) for v in rs_head.values())
            self._rs_w[k] = np.array([rs_got.get(int(d), 0) for d in cs.device_id], dtype=np.int64)
            cs.reserved_up_w = self._rs_w[k].copy()

    # -------------------------------------------------------------------- step k: follow
    def follow(self, k: int, *, hd: HouseholdDispatch, ed: EVDispatch, sd: StorageDispatch
               ) -> tuple[HouseholdDispatch, EVDispatch, StorageDispatch, RegulationReport]:
        """Follow the signal of ``k`` after the market dispatch; the new dispatches and the report."""
        hh, cs, ev = self.hh, self.cs, self.ev
        sig = self.signal[k]
        step_h = self.step_s / 3600.0
        cs_w = self._cs_w.pop(k, np.zeros(cs.n, dtype=np.int64))
        hh_w = self._hh_w.pop(k, np.zeros(hh.n, dtype=np.int64))
        offered = self._offered.pop(k, 0)
        ev_w = self._ev_w.pop(k, np.zeros(ev.n, dtype=np.int64))
        rs_w = self._rs_w.pop(k, np.zeros(cs.n, dtype=np.int64))
        rs_offered = self._rs_offered.pop(k, 0)
        cs.reserved_w = np.zeros(cs.n, dtype=np.int64)  # DR offers for k + 1 see the whole battery
        cs.reserved_up_w = np.zeros(cs.n, dtype=np.int64)
        ev.reserved_wh = np.zeros(ev.n)
        resources: list[dict[str, Any]] = []
        if cs_w.any():
            req, out, sd = self._follow_storage(sig, cs_w, sd)
            resources += _rows("storage", cs.device_id, cs_w, req, out, step_h)
        reserve: list[dict[str, Any]] = []
        active = bool(self.activated[k]) and bool(rs_w.any())
        if rs_w.any():  # activated: every reserving battery discharges its capacity all interval
            req_wh, got_wh = np.zeros(cs.n), np.zeros(cs.n)
            if active:
                req, out, sd = self._follow_storage(np.ones(sig.size), rs_w, sd)
                req_wh, got_wh = req.sum(axis=0) * step_h, out.sum(axis=0) * step_h
            reserve = [{"device_id": int(cs.device_id[i]), "kind": "storage", "capacity_w": int(rs_w[i]),
                        "requested_wh": float(req_wh[i]), "energy_wh": int(np.floor(got_wh[i] + 1e-9))}
                       for i in np.flatnonzero(rs_w > 0)]
        if hh_w.any():
            req, out, _ = dispatch(sig, hh_w, step_s=self.step_s)
            up_wh = out.sum(axis=0) * step_h  # consumes less
            hh.flex_remaining_wh = hh.flex_remaining_wh + up_wh
            hd = dataclasses.replace(hd, load_wh=hd.load_wh - up_wh, flex_wh=hd.flex_wh - up_wh,
                                     metered_wh=hd.metered_wh - up_wh)
            resources += _rows("flex", hh.device_id, hh_w, req, out, step_h)
        if ev_w.any():
            ed, req, out = self._follow_ev(k, ed, ev_w, sig)
            resources += _rows("ev", ev.device_id, ev_w, req, out, step_h)
        report = RegulationReport(interval=k, requested_w=round(self.requested_kw * 1000),
                                  offered_w=int(offered), signal_mean=float(sig.mean()),
                                  resources=resources, reserve_requested_w=round(self.reserve_kw * 1000),
                                  reserve_offered_w=int(rs_offered), reserve_activated=active,
                                  reserve=reserve)
        return hd, ed, sd, report

    def _follow_storage(self, level: np.ndarray, cap_w: np.ndarray, sd: StorageDispatch
                        ) -> tuple[np.ndarray, np.ndarray, StorageDispatch]:
        """Batteries follow ``level x capacity`` (up = discharge) from their state now, inside
        the SOC band above the DR reserve; the meter reads it on top of the market's energy."""
        cs = self.cs
        req, out, e_after = dispatch(level, cap_w, step_s=self.step_s, energy_wh=cs.energy_wh,
                                     capacity_wh=np.full(cs.n, cs.capacity_wh), soc_min=cs.dr_reserve,
                                     soc_max=cs.soc_max, eta=cs.eta)
        up_wh = out.sum(axis=0) * (self.step_s / 3600.0)  # terminal energy, up (discharge) positive
        cs.energy_wh = e_after
        metered = sd.metered_wh - up_wh
        return req, out, StorageDispatch(charge_wh=np.clip(metered, 0.0, None),
                                         discharge_wh=np.clip(-metered, 0.0, None), metered_wh=metered)

    def _follow_ev(self, k: int, ed: EVDispatch, cap_w: np.ndarray,
                   sig: np.ndarray) -> tuple[EVDispatch, np.ndarray, np.ndarray]:
        """EV chargers move their charging around what the market made them charge: up (less)
        down to what the departure forces, down (more) up to the charger and the need."""
        ev = self.ev
        step_h = self.step_s / 3600.0
        h = self.interval_s / 3600.0
        base = ed.charge_wh  # Wh of the interval
        need0 = ed.remaining_need_wh + base - ed.discharge_wh / ev.v2g_eta
        up_room = np.clip(base - ev._must(k, need0), 0.0, None)  # Wh it may charge less
        down_room = np.clip(np.minimum(ev.cap_wh - base, need0 - base), 0.0, None)  # Wh more
        up_room = np.where(ed.discharge_wh > 0, 0.0, up_room)  # a V2G seller does not regulate
        down_room = np.where(ed.discharge_wh > 0, 0.0, down_room)
        p_up, p_down = base / h, (ev.cap_wh - base) / h  # W it can move each step
        req = sig[:, None] * cap_w[None, :].astype(np.float64)
        out = np.clip(req, -np.clip(p_down, 0.0, None), np.clip(p_up, 0.0, None))
        moved = np.zeros(ev.n)  # Wh, up positive (charged less)
        for t in range(out.shape[0]):
            got = np.clip(out[t] * step_h, -(down_room + moved), up_room - moved)
            out[t] = got / step_h
            moved = moved + got
        ev.energy_wh = ev.energy_wh - moved
        ed = EVDispatch(plugged=ed.plugged, charge_wh=base - moved,
                        remaining_need_wh=ed.remaining_need_wh + moved, discharge_wh=ed.discharge_wh)
        return ed, req, out


def _rows(kind: str, device_id: np.ndarray, cap_w: np.ndarray, req: np.ndarray, out: np.ndarray,
          step_h: float) -> list[dict[str, Any]]:
    """Report rows of the resources with capacity (mileage: the sum of the set point's
    absolute changes from 0 at the interval's start, W)."""
    score = performance_score(req, out)
    mileage = np.abs(np.diff(req, axis=0, prepend=0.0)).sum(axis=0)
    idx = np.flatnonzero(cap_w > 0)
    return [{"device_id": int(device_id[i]), "kind": kind, "capacity_w": int(cap_w[i]),
             "mileage_w": round(float(mileage[i])), "score_ppm": round(float(score[i]) * PPM),
             "requested_wh": float(req[:, i].sum() * step_h),
             "delivered_wh": float(out[:, i].sum() * step_h)} for i in idx]


def regulation_desk(scenario: Any, *, households: Households, storage: CommunityStorage,
                    evs: EVFleet) -> RegulationDesk | None:
    """The desk of a scenario with ``market.services.ancillary`` enabled, else None."""
    spec = getattr(scenario.market.services, "ancillary", None)
    if spec is None or not spec.enabled:
        return None
    return RegulationDesk(spec=spec, households=households, storage=storage, evs=evs,
                          interval_s=scenario.market.interval_s, n_intervals=scenario.n_intervals,
                          seed=scenario.seed)
