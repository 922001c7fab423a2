"""The reference ledger's state, parameters and clock (:class:`ReferenceState`), the base of
:class:`~twin.market.reference.ReferenceLedger` (gate rule in :mod:`twin.market.reference`),
and the helpers its parts share (:func:`purpose`, :func:`require_role`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from twin.market import errors as e
from twin.market.bond import BondTerms
from twin.market.ledger import IntervalStatus, MarketParameters
from twin.market.mechanisms import Mechanism, check_mechanism
from twin.market.signing import ZERO_ADDRESS, Domain, Rejection
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT, Device, Order, Side, Trade

__all__ = ["Account", "ReferenceState", "purpose", "require_role"]


@dataclass(slots=True)
class Account:
    """One account's money: wallet, free and locked market balance, debt to the DSO."""

    wallet: int = 0
    free: int = 0
    locked: int = 0
    debt: int = 0
    bond: int = 0  # imbalance collateral of its devices (withdraw cannot take it)


class ReferenceState(MarketParameters):
    """The reference ledger's parameters, state dicts and clock."""

    def __init__(
        self,
        *,
        interval_s: int,
        retail_price_per_mwh: int,
        feed_in_price_per_mwh: int,
        domain: Domain | None = None,
        gate_lead_s: int | None = None,
        mechanism: Mechanism = "uniform",
        min_order_wh: int = 1,
        imbalance_bond: int = 0,
        bond_intervals: int = 0,
        true_up_expiry_s: int = 0,
    ) -> None:
        if interval_s <= 0 or retail_price_per_mwh < 0 or feed_in_price_per_mwh < 0:
            raise ValueError("interval_s must be > 0 and tariffs >= 0")
        self._mechanism = check_mechanism(mechanism)  # twin.market.mechanisms
        lead = interval_s if gate_lead_s is None else gate_lead_s
        if lead < 0:
            raise ValueError(f"gate_lead_s must be >= 0, got {gate_lead_s}")
        self._gate_lead_s = lead
        if not 1 <= min_order_wh < 2**64:
            raise ValueError(f"min_order_wh must be in 1..2**64-1, got {min_order_wh}")
        self._min_order_wh = int(min_order_wh)
        if imbalance_bond < 0:
            raise ValueError(f"imbalance_bond must be >= 0, got {imbalance_bond}")
        # twin.market.bond: floor, intervals at the device's rating, true-up expiry
        self._bond_terms = BondTerms(floor=int(imbalance_bond), intervals=int(bond_intervals),
                                     true_up_expiry_s=int(true_up_expiry_s))
        #: device -> (last interval it ordered in, bond posted) (EnergyMarket.DeviceInfo)
        self._device_info: dict[int, tuple[int, bool]] = {}
        #: account -> what its bonds lack of bond_of per bonded device (drawn, not yet
        #: topped up), and the first interval not known final (MarketSettlement.BondStore)
        self._bond_short: dict[int, int] = defaultdict(int)
        self._final_below = 0
        self._now_s = -(interval_s + lead)
        self._interval_s = interval_s
        self._retail = retail_price_per_mwh
        self._feed_in = feed_in_price_per_mwh
        self._accounts: dict[int, Account] = defaultdict(Account)
        self._devices: dict[int, Device] = {}
        self.operator = OPERATOR_ACCOUNT  # moves in two steps: transfer_operator, accept_operator
        self.pending_operator: int | None = None
        self._revoked: set[int] = set()
        self._orders: dict[int, Order] = {}
        self._orders_by_interval: dict[int, list[int]] = defaultdict(list)
        self._escrow: dict[int, int] = {}  # buy order id -> escrow at placement
        self._used: dict[tuple[int, int, Side], int] = defaultdict(
            int
        )  # (device, interval, side) -> Wh
        self._trades: dict[int, Trade] = {}
        self._trades_by_interval: dict[int, list[int]] = defaultdict(list)
        self._status: dict[int, IntervalStatus] = {}
        self._next_order = 1
        self._next_trade = 1
        self._domain = domain or Domain(chain_id=0, verifying_contract=ZERO_ADDRESS)
        self._signers: dict[int, str] = {}
        self._nonces: dict[tuple[int, int], int] = defaultdict(int)  # (device, interval)
        self._n_orders: dict[tuple[int, int], int] = defaultdict(int)  # (device, interval)
        self._batch_orders: dict[tuple[int, int], int] = defaultdict(int)
        self._batch_info: dict[int, tuple[int, bool]] = {}  # device -> (last interval, bonded)
        self._batch_bond: dict[int, int] = defaultdict(int)  # owner -> bonds posted
        self._batch_fill: dict[int, int] = defaultdict(int)  # owner -> drawn bond topped up
        #: (device, interval, side) -> the DSO's operating envelope, Wh (dso.policy envelopes)
        self._envelope: dict[tuple[int, int, Side], int] = {}
        #: interval -> device -> book (electrical island) while the feeder is split
        self._books: dict[int, dict[int, int]] = {}
        #: (interval, device) -> (estimate_wh, traded_wh) settled provisionally (true_up)
        self._provisional: dict[tuple[int, int], tuple[int, int]] = {}
        # daily signing (twin.market.reference_daily):
        #: device -> (day, revision, verified orders, the revision's hashStruct) of its latest
        #: verified schedule revision (the day's schedule with its slot amendments applied)
        self._schedules: dict[int, tuple[int, int, np.ndarray, bytes]] = {}
        #: interval -> (devices ascending, estimate Wh, traded Wh, trued up) settled on
        #: relayed readings, waiting for the devices' signed daily batches
        self._daily_pending: dict[int, tuple[np.ndarray, ...]] = {}
        self._daily_done: set[tuple[int, int]] = set()  # (device, day) trued up
        self._trued_up: set[tuple[int, int]] = set()
        self._final_estimates: set[tuple[int, int]] = set()  # expired, made final (finalize_estimate)
        #: the signed orders the last place_signed_orders call skipped, with their errors
        self.rejected: list[Rejection] = []

    # --- parameters -------------------------------------------------------------------
    @property
    def mechanism(self) -> Mechanism:
        """The market mechanism (:mod:`twin.market.mechanisms`)."""
        return self._mechanism

    @property
    def domain(self) -> Domain:
        """EIP-712 domain that device keys sign orders and readings under."""
        return self._domain

    # --- clock ------------------------------------------------------------------------
    @property
    def now_s(self) -> int:
        """The market clock: seconds since the start of interval 0's delivery."""
        return self._now_s

    def set_time(self, now_s: int) -> None:
        """Move the clock forward to ``now_s`` (simulation seconds since the market's start)."""
        if now_s < self._now_s:
            raise ValueError(
                f"set_time: now_s={now_s} is before the market clock ({self._now_s} s); "
                "time only moves forward"
            )
        self._now_s = now_s

    def gate_s(self, interval: int) -> int:
        """Last clock time at which orders for ``interval`` are accepted."""
        return interval * self._interval_s - self._gate_lead_s

    def reclaim_after_s(self, interval: int) -> int:
        """Deadline after which an uncleared interval's escrow is reclaimable (and after
        which anyone may clear it)."""
        return self.gate_s(interval) + self._interval_s

    def cap_wh(self, device: Device) -> int:
        """Per-interval energy cap of a device."""
        return device.capacity_w * self._interval_s // 3600

    def device(self, device_id: int) -> Device:
        if device_id not in self._devices:
            raise e.UnknownDevice(device_id)
        return self._devices[device_id]


    def _credit(self, account: int, amount: int) -> None:
        """Credit ``amount`` to the free balance; an indebted account (not the DSO) pays its
        debt to the DSO from it first (the contract's DebtPaid)."""
        acc = self._accounts[account]
        pay = 0 if account == DSO_ACCOUNT else min(acc.debt, amount)
        acc.debt -= pay
        acc.free += amount - pay
        self._accounts[DSO_ACCOUNT].free += pay

    def _draw(self, payer: int, due: int) -> tuple[int, int]:
        """A payer pays ``due`` from its free balance, then from its imbalance bond (what it
        takes is the bond's shortfall, topped up later: _top_up); the rest becomes debt
        (MarketSettlement.draw). Returns (paid, unpaid)."""
        acc = self._accounts[payer]
        from_free = min(acc.free, due)
        from_bond = min(acc.bond, due - from_free)
        acc.free -= from_free
        acc.bond -= from_bond
        self._bond_short[payer] += from_bond
        paid = from_free + from_bond
        acc.debt += due - paid
        return paid, due - paid

    def _pay(self, owner: int, *, owner_pays: bool, due: int) -> tuple[int, int]:
        """The one payment between an owner and the DSO (MarketSettlement.pay): the payer pays
        from free, then bond, the rest becomes debt; the payee is credited (_credit). Returns
        (what moved, signed for the owner, what became debt)."""
        if due == 0:
            return 0, 0
        payer, payee = (owner, DSO_ACCOUNT) if owner_pays else (DSO_ACCOUNT, owner)
        paid, unpaid = self._draw(payer, due)
        self._credit(payee, paid)
        return (-paid if owner_pays else paid), unpaid

    def _top_up(self, owner: int) -> None:
        """A drawn bond refills from the owner's free balance as far as it goes, at each
        settlement of one of its devices and before each device's first order of an interval
        (MarketSettlement.topUp; the order's refill: ReferenceLedger._check_order)."""
        short = self._bond_short.get(owner, 0)
        if short:
            acc = self._accounts[owner]
            fill = min(short, acc.free)
            acc.free -= fill
            acc.bond += fill
            self._bond_short[owner] = short - fill


@contextmanager
def purpose(text: str) -> Iterator[None]:
    """Attach what was being done to a market error raised inside."""
    try:
        yield
    except e.MarketError as exc:
        if exc.purpose is None:
            exc.purpose = text
        raise


def require_role(sender: int | None, role: int, error: type[e.MarketError]) -> None:
    if sender is not None and sender != role:
        raise error(sender)
