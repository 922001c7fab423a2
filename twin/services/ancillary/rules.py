"""Frequency-regulation capacity for VPPs (ancillary services): the pure reference rules.

Seed: the one-stop VPP + RWA paper (§6) earns from market trading, **frequency regulation**
and demand response. This module is the reference of that service, self-contained so that it
is the ``rules`` of the market-service plugin ``twin/services/ancillary`` (not yet registered):
the TSO procures symmetric regulation capacity per market interval, the VPP offers its
resources' headroom, a regulation signal drives their dispatch inside the interval, and the
TSO pays for capacity and for performance. Everything is arrays in, arrays out; money is
integer micro-units (:mod:`twin.market.units`), split without creating or destroying any.

* **Signal** (:func:`synthetic_signal`): a seeded Ornstein-Uhlenbeck process in ``[-1, 1]``
  per ``step_s`` (default 60 s) -- mean 0, stationary standard deviation ``sigma`` (0.35),
  correlation time ``tau_s`` (300 s), like a conventional AGC regulation signal (PJM RegA:
  slow, energy-neutral on average). ``+1`` asks for full *up* regulation (inject more /
  consume less), ``-1`` full *down*. :func:`load_signal` reads a recorded one (CSV, one value
  a line) and checks its resolution.
* **Headroom** (agent side, :func:`storage_headroom_kw`, :func:`ev_headroom_kw`,
  :func:`flex_headroom_kw`): what a resource can move up and down around its plan for the whole
  interval (power limit; energy limit: a battery must hold the interval at full up or down
  regulation inside its SOC band). The product is symmetric: a resource offers
  ``min(up, down)``.
* **Procurement** (:func:`procure`): the TSO asks ``requested_kw``; the VPP offers the sum of
  its resources' headroom; the TSO takes ``min(requested, offered)`` and the VPP assigns it to
  its resources pro rata to their headroom, in whole watts (largest remainder).
* **Dispatch** (:func:`dispatch`): each resource's set point at each step is ``signal x its
  capacity``; a battery follows it while its state of charge allows (quasi-static: energy per
  step, no ramp limit), an EV or flexible load moves its consumption around its plan within
  its headroom. Delivered energy and the SOC path come back.
* **Performance** (:func:`performance_score`): the precision score ``1 - sum|delivered -
  requested| / sum|requested|`` (clipped to [0, 1]; PJM's score also weighs correlation and
  delay, which a quasi-static model cannot produce).
* **Payment** (:func:`settle_regulation`): capacity ``payment(capacity_w x interval, capacity
  price) x score`` plus performance ``mileage x performance price x score`` (mileage: the sum
  of the set point's absolute changes, MW); the TSO pays the VPP the total, the VPP splits it
  to its resources pro rata to ``capacity x score`` (integers that sum to the total).

Bad input: :func:`check_product` (a product without any capable resource) and
:func:`load_signal` (a missing file, a resolution that does not fit) raise
:class:`AncillaryError` naming the scenario field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin.market import errors as e
from twin.market.allocation import integer_allocation
from twin.market.units import MICRO
from twin.services.ancillary.reserve import ReservePayment, reserve_amounts

__all__ = [
    "PPM",
    "AncillaryError",
    "AncillaryLedger",
    "RegulationPayment",
    "RegulationSettlement",
    "check_product",
    "dispatch",
    "ev_headroom_kw",
    "flex_headroom_kw",
    "load_signal",
    "performance_score",
    "procure",
    "regulation_amounts",
    "settle_regulation",
    "storage_headroom_kw",
    "synthetic_signal",
]


class AncillaryError(ValueError):
    """Bad ancillary-service input, with the scenario field it comes from."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# --------------------------------------------------------------------------------- signal
def synthetic_signal(rng: np.random.Generator, *, n_intervals: int, interval_s: int,
                     step_s: int = 60, tau_s: float = 300.0, sigma: float = 0.35) -> np.ndarray:
    """Seeded regulation signal, shape ``(n_intervals, interval_s // step_s)``, in [-1, 1]."""
    if step_s <= 0 or interval_s % step_s:
        raise AncillaryError("signal.step_s", f"{step_s} s must divide the interval ({interval_s} s)")
    if tau_s <= 0 or not 0 < sigma <= 1:
        raise AncillaryError("signal", "need tau_s > 0 and 0 < sigma <= 1")
    n = n_intervals * (interval_s // step_s)
    a = math.exp(-step_s / tau_s)
    noise = rng.normal(0.0, sigma * math.sqrt(1 - a * a), n)
    x = np.empty(n)
    prev = rng.normal(0.0, sigma)
    for t in range(n):  # n is small (a day at 60 s: 1,440 steps)
        prev = a * prev + noise[t]
        x[t] = prev
    return np.clip(x, -1.0, 1.0).reshape(n_intervals, interval_s // step_s)


def load_signal(path: str | Path, *, n_intervals: int, interval_s: int, step_s: int,
                field: str = "signal.file") -> np.ndarray:
    """A recorded signal (CSV, one value in [-1, 1] a line, ``step_s`` apart)."""
    p = Path(path)
    if not p.is_file():
        raise AncillaryError(field, f"signal file {p} does not exist")
    try:
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise AncillaryError(field, f"cannot read {p} ({exc})") from exc
    col = 0
    if lines and not _is_number(lines[0].split(",")[0]):  # a header: the column 'signal'
        header = [h.strip().lower() for h in lines[0].split(",")]
        if "signal" not in header:
            raise AncillaryError(field, f"{p} has columns {header}; it needs a column 'signal' "
                                        "(or no header and one number a line)")
        col, lines = header.index("signal"), lines[1:]
    try:
        x = np.array([float(ln.split(",")[col]) for ln in lines], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise AncillaryError(field, f"{p} is not one number a line in column {col} ({exc})") from exc
    if step_s <= 0 or interval_s % step_s:
        raise AncillaryError(field, f"resolution {step_s} s does not divide the interval ({interval_s} s)")
    need = n_intervals * (interval_s // step_s)
    if x.ndim != 1 or x.size != need:
        raise AncillaryError(field, f"{p} has {x.size} values; {n_intervals} intervals of "
                                    f"{interval_s} s at {step_s} s resolution need {need}")
    if not np.isfinite(x).all() or np.abs(x).max() > 1:
        raise AncillaryError(field, f"{p}: values must be finite and within [-1, 1]")
    return x.reshape(n_intervals, interval_s // step_s)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_product(capable: Mapping[str, int], *, field: str) -> None:
    """A product needs at least one capable resource (``capable``: kind -> count)."""
    if sum(capable.values()) == 0:
        raise AncillaryError(field, "regulation product without any capable resource (no storage, "
                                    "EV or flexible load in the VPP)")


# ------------------------------------------------------------------------------- headroom
def storage_headroom_kw(*, energy_wh: np.ndarray, capacity_wh: np.ndarray, power_kw: np.ndarray,
                        soc_min: float, soc_max: float, interval_s: int, eta: float = 1.0,
                        plan_kw: np.ndarray | None = None) -> np.ndarray:
    """Symmetric headroom of batteries around ``plan_kw`` (discharge positive) for a whole
    interval at full regulation: power left each way and energy inside the SOC band."""
    h = interval_s / 3600.0
    plan = np.zeros_like(energy_wh) if plan_kw is None else plan_kw
    up_p = power_kw - plan
    down_p = power_kw + plan
    up_e = (energy_wh - soc_min * capacity_wh) * eta / h / 1000.0 - plan
    down_e = (soc_max * capacity_wh - energy_wh) / eta / h / 1000.0 + plan
    out: np.ndarray = np.clip(np.minimum(np.minimum(up_p, up_e), np.minimum(down_p, down_e)), 0.0, None)
    return out


def ev_headroom_kw(*, plugged: np.ndarray, plan_kw: np.ndarray, charger_kw: np.ndarray,
                   room_wh: np.ndarray, interval_s: int) -> np.ndarray:
    """Symmetric headroom of EV chargers: up = the planned charge it can drop, down = the
    charger power left above the plan (and room in the battery for the interval)."""
    h = interval_s / 3600.0
    up = plan_kw
    down = np.minimum(charger_kw - plan_kw, room_wh / h / 1000.0 - plan_kw)
    out: np.ndarray = np.where(plugged, np.clip(np.minimum(up, down), 0.0, None), 0.0)
    return out


def flex_headroom_kw(*, plan_kw: np.ndarray, power_kw: np.ndarray, left_wh: np.ndarray,
                     interval_s: int) -> np.ndarray:
    """Symmetric headroom of flexible loads: up = the planned run it can pause, down = the
    power left above the plan while energy is left to run."""
    h = interval_s / 3600.0
    down = np.minimum(power_kw - plan_kw, left_wh / h / 1000.0 - plan_kw)
    out: np.ndarray = np.clip(np.minimum(plan_kw, down), 0.0, None)
    return out


# ---------------------------------------------------------------------------- procurement
def procure(requested_kw: float, headroom_kw: Mapping[int, float]) -> dict[int, int]:
    """Capacity (W) assigned to each resource: ``min(requested, offered)`` pro rata to the
    headroom, in whole watts that never exceed a resource's own headroom."""
    if requested_kw < 0:
        raise AncillaryError("requested_kw", f"must be >= 0, got {requested_kw}")
    cap_w = {r: math.floor(max(kw, 0.0) * 1000) for r, kw in headroom_kw.items()}
    offered = sum(cap_w.values())
    take = min(math.floor(requested_kw * 1000), offered)
    if take <= 0:
        return dict.fromkeys(cap_w, 0)
    shares = {r: w * take / offered for r, w in cap_w.items()}
    out = integer_allocation(shares, take)
    # largest remainder may add one watt to a resource at its cap: move it to one with room
    for r in out:
        while out[r] > cap_w[r]:
            out[r] -= 1
            spare = next(q for q in out if out[q] < cap_w[q])
            out[spare] += 1
    return out


# ------------------------------------------------------------------------------- dispatch
def dispatch(signal: np.ndarray, capacity_w: np.ndarray, *, step_s: int,
             energy_wh: np.ndarray | None = None, capacity_wh: np.ndarray | None = None,
             soc_min: float = 0.0, soc_max: float = 1.0,
             eta: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One interval: ``(requested_w, delivered_w, energy_wh_after)``, shape (steps, resources).

    Set point ``signal x capacity`` (up positive). Resources with ``capacity_wh`` > 0 are
    batteries: each step's energy ``set point x step`` is delivered as far as the SOC band
    allows; the others (EVs, flexible loads: their headroom already fits the interval)
    deliver it in full."""
    sig = np.asarray(signal, dtype=np.float64)
    cap = np.asarray(capacity_w, dtype=np.float64)
    req = sig[:, None] * cap[None, :]
    h = step_s / 3600.0
    if energy_wh is None or capacity_wh is None:
        return req, req.copy(), np.zeros(cap.size) if energy_wh is None else energy_wh.copy()
    e = np.asarray(energy_wh, dtype=np.float64).copy()
    cwh = np.asarray(capacity_wh, dtype=np.float64)
    is_bat = cwh > 0
    out = req.copy()
    for t in range(sig.size):
        want = req[t] * h  # Wh at the terminals, up = discharge
        can_up = np.where(is_bat, np.clip(e - soc_min * cwh, 0.0, None) * eta, np.inf)
        can_down = np.where(is_bat, np.clip(soc_max * cwh - e, 0.0, None) / eta, np.inf)
        got = np.clip(want, -can_down, can_up)
        out[t] = got / h
        e = np.where(is_bat, e - np.where(got > 0, got / eta, got * eta), e)
    return req, out, e


def performance_score(requested_w: np.ndarray, delivered_w: np.ndarray) -> np.ndarray:
    """Precision score per resource: ``1 - sum|delivered - requested| / sum|requested|``."""
    err = np.abs(delivered_w - requested_w).sum(axis=0)
    base = np.abs(requested_w).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(base > 0, 1.0 - err / base, 1.0)
    out: np.ndarray = np.clip(score, 0.0, 1.0)
    return out


# -------------------------------------------------------------------------------- payment
@dataclass(frozen=True, slots=True)
class RegulationSettlement:
    """One interval's regulation payment (micro-units)."""

    capacity_amount: int
    performance_amount: int
    by_resource: dict[int, int]  # the VPP's split, sums to capacity + performance

    @property
    def total(self) -> int:
        return self.capacity_amount + self.performance_amount


def settle_regulation(*, resources: Sequence[int], capacity_w: np.ndarray, requested_w: np.ndarray,
                      score: np.ndarray, interval_s: int, capacity_price_per_mw_h: int,
                      performance_price_per_mw: int) -> RegulationSettlement:
    """Capacity + performance payment of one interval and its split (module docstring).

    Prices in micro-units: ``capacity_price_per_mw_h`` per MW of capacity per hour,
    ``performance_price_per_mw`` per MW of mileage. Each resource earns
    ``floor(capacity_w x hours x price / 1e6 x score)`` plus ``floor(mileage_w x price / 1e6 x
    score)``; the VPP is paid their sum, so the split is exact."""
    cap = np.asarray(capacity_w, dtype=np.int64)
    mileage_w = np.abs(np.diff(requested_w, axis=0, prepend=0.0)).sum(axis=0)
    cap_amt = np.floor(cap * (interval_s / 3600.0) * capacity_price_per_mw_h / MICRO * score)
    perf_amt = np.floor(mileage_w * performance_price_per_mw / MICRO * score)
    by = {int(r): int(c + p) for r, c, p in zip(resources, cap_amt, perf_amt, strict=True)}
    return RegulationSettlement(capacity_amount=int(cap_amt.sum()), performance_amount=int(perf_amt.sum()),
                                by_resource=by)


# ------------------------------------------------------------------ settlement on a ledger
#: score resolution: parts per million
PPM = 1_000_000


def regulation_amounts(*, capacity_w: int, mileage_w: int, score_ppm: int, interval_s: int,
                       capacity_price_per_mw_h: int, performance_price_per_mw: int) -> tuple[int, int]:
    """Integer ``(capacity, performance)`` payment of one resource for one interval (micro-units),
    the formula ``AncillaryServices.sol`` computes: ``floor(capacity_w x interval_s x price x
    score_ppm / (3600 x 1e6 x 1e6))`` and ``floor(mileage_w x price x score_ppm / 1e12)``."""
    cap = capacity_w * interval_s * capacity_price_per_mw_h * score_ppm // (3600 * MICRO * PPM)
    perf = mileage_w * performance_price_per_mw * score_ppm // (MICRO * PPM)
    return cap, perf


@dataclass(frozen=True, slots=True)
class RegulationPayment:
    """One resource's payment for one interval (micro-units)."""

    interval: int
    device_id: int
    owner: int
    capacity_w: int
    mileage_w: int
    score_ppm: int
    capacity_amount: int
    performance_amount: int

    @property
    def amount(self) -> int:
        return self.capacity_amount + self.performance_amount


class AncillaryLedger:
    """Reference of ``AncillaryServices.sol``: the payer (the DSO's account, paying for the
    TSO) settles one interval's regulation at the prices fixed at deployment; each resource's
    owner is paid :func:`regulation_amounts` from the payer's wallet, once per interval.
    Errors are the market's (:mod:`twin.market.errors`), the same the contract reverts with."""

    def __init__(self, *, owners: Mapping[int, int], payer: int, interval_s: int,
                 capacity_price_per_mw_h: int, performance_price_per_mw: int,
                 reserve_capacity_price_per_mw_h: int = 0, reserve_energy_price_per_mwh: int = 0) -> None:
        for price in (capacity_price_per_mw_h, performance_price_per_mw, reserve_capacity_price_per_mw_h,
                      reserve_energy_price_per_mwh):
            if price < 0:
                raise e.BadPrice(0, price)
        self.owners = dict(owners)
        self.payer = payer
        self.interval_s = interval_s
        self.capacity_price_per_mw_h = capacity_price_per_mw_h
        self.performance_price_per_mw = performance_price_per_mw
        self.reserve_capacity_price_per_mw_h = reserve_capacity_price_per_mw_h
        self.reserve_energy_price_per_mwh = reserve_energy_price_per_mwh
        self._settled: set[int] = set()
        self._reserve_settled: set[int] = set()
        self.paid = 0

    def settle(self, *, sender: int, interval: int, devices: Sequence[int], capacity_w: Sequence[int],
               mileage_w: Sequence[int], score_ppm: Sequence[int]) -> list[RegulationPayment]:
        """Pay one interval (the caller moves ``sum(amount)`` from the payer to the owners)."""
        if sender != self.payer:
            raise e.NotDSO(sender)
        if interval in self._settled:
            raise e.AlreadySettled(interval)
        n = len(devices)
        if not len(capacity_w) == len(mileage_w) == len(score_ppm) == n:
            raise e.BadReadings(n)
        out: list[RegulationPayment] = []
        for d, c, m, s in zip(devices, capacity_w, mileage_w, score_ppm, strict=True):
            if d not in self.owners:
                raise e.UnknownDevice(d)
            for v in (c, m):
                if v < 0:
                    raise e.BadAmount(v)
            if not 0 <= s <= PPM:
                raise e.BadAmount(s)
            ca, pa = regulation_amounts(capacity_w=c, mileage_w=m, score_ppm=s, interval_s=self.interval_s,
                                        capacity_price_per_mw_h=self.capacity_price_per_mw_h,
                                        performance_price_per_mw=self.performance_price_per_mw)
            out.append(RegulationPayment(interval, d, self.owners[d], c, m, s, ca, pa))
        self._settled.add(interval)
        self.paid += sum(p.amount for p in out)
        return out

    def settle_reserve(self, *, sender: int, interval: int, devices: Sequence[int],
                       capacity_w: Sequence[int], energy_wh: Sequence[int]) -> list[ReservePayment]:
        """Pay one interval's upward reserve (capacity held, energy activated), once per
        interval, like :meth:`settle` (:mod:`.reserve`)."""
        if sender != self.payer:
            raise e.NotDSO(sender)
        if interval in self._reserve_settled:
            raise e.AlreadySettled(interval)
        n = len(devices)
        if not len(capacity_w) == len(energy_wh) == n:
            raise e.BadReadings(n)
        out: list[ReservePayment] = []
        for d, c, w in zip(devices, capacity_w, energy_wh, strict=True):
            if d not in self.owners:
                raise e.UnknownDevice(d)
            for v in (c, w):
                if v < 0:
                    raise e.BadAmount(v)
            ca, ea = reserve_amounts(capacity_w=c, energy_wh=w, interval_s=self.interval_s,
                                     capacity_price_per_mw_h=self.reserve_capacity_price_per_mw_h,
                                     energy_price_per_mwh=self.reserve_energy_price_per_mwh)
            out.append(ReservePayment(interval, d, self.owners[d], c, w, ca, ea))
        self._reserve_settled.add(interval)
        self.paid += sum(p.amount for p in out)
        return out
