"""Typed market errors, one class per Solidity custom error (same name, same arguments).

Both ledgers raise these: :class:`~twin.market.reference.ReferenceLedger` directly, and
:class:`~twin.chain.ledger.ChainLedger` after decoding a revert, adding the transaction's
purpose (e.g. ``"place_orders: order for device 7 interval 3"``). Arguments that are
addresses on chain are account indices here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twin.errors import TwinError

__all__ = [
    "ERRORS",
    "AlreadyCleared",
    "AlreadySettled",
    "AlreadyTruedUp",
    "BadAmount",
    "BadEnergy",
    "BadOrderList",
    "BadPrice",
    "BadReadings",
    "BadSignature",
    "BondLocked",
    "BookChanged",
    "CapacityExceeded",
    "ClearingInProgress",
    "CommitClosed",
    "CursorMismatch",
    "CurtailIncrease",
    "DeviceExists",
    "DeviceRevoked",
    "EnvelopeExceeded",
    "GateClosed",
    "GateOpen",
    "InDebt",
    "InsufficientBalance",
    "IntervalClosed",
    "LockBelowMinimum",
    "MarketError",
    "MeterOutOfRange",
    "MissingMeterReading",
    "NotApproved",
    "NotCleared",
    "NotDSO",
    "NotDeviceOwner",
    "NotOperator",
    "NotPoster",
    "NotProvisional",
    "NotReclaimable",
    "NotSettled",
    "OppositeSide",
    "OrderTooSmall",
    "ReplayedNonce",
    "SettlementInProgress",
    "TooManyOrders",
    "TradesUnpaid",
    "TrueUpExpired",
    "TrueUpOpen",
    "UnknownDevice",
    "UnknownEvent",
    "UnknownTrade",
    "UnsafeRecipient",
]


class MarketError(TwinError):
    """Base of every market rule violation.

    ``fields`` names the arguments (in Solidity order); ``values`` holds them as a dict.
    ``purpose`` is set by the chain ledger (what the transaction tried to do).
    """

    fields: ClassVar[tuple[str, ...]] = ()
    explanation: ClassVar[str] = ""

    def __init__(self, *args: int, purpose: str | None = None, **kwargs: int) -> None:
        if len(args) > len(self.fields):
            raise TypeError(f"{type(self).__name__} takes {len(self.fields)} arguments")
        values = dict(zip(self.fields, args, strict=False))
        for key, value in kwargs.items():
            if key not in self.fields or key in values:
                raise TypeError(f"{type(self).__name__}: bad argument {key!r}")
            values[key] = value
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing {missing}")
        self.values: dict[str, Any] = {f: values[f] for f in self.fields}
        self.purpose = purpose
        self.tx_hash: str | None = None  # set by the chain ledger
        self.pre_send = False  # True: caught by a check before anything was sent
        super().__init__(self._message())

    @property
    def name(self) -> str:
        return type(self).__name__

    def signature(self) -> str:
        """``Name(field=value, ...)`` as in the contract's custom error."""
        inner = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"{self.name}({inner})"

    def _message(self) -> str:
        text = self.signature()
        if self.explanation:
            text += f": {self.explanation}"
        if self.purpose:
            verb = "rejected before sending:" if self.pre_send else "reverted with"
            text = f"{self.purpose} {verb} {text}"
        return text

    def __str__(self) -> str:
        return self._message()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.values == self.values  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.values.items())))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self).__name__, self.values, self.purpose))


def _rebuild(name: str, values: dict[str, Any], purpose: str | None) -> MarketError:
    return ERRORS[name](purpose=purpose, **values)


class NotOperator(MarketError):
    """Only the market operator may do this."""

    fields = ("account",)
    explanation = "only the market operator may do this"


class NotDSO(MarketError):
    """Only the DSO may do this."""

    fields = ("account",)
    explanation = "only the DSO may do this"


class NotDeviceOwner(MarketError):
    """Account does not own (or act for the owner of) the device."""

    fields = ("device", "account")
    explanation = "account does not own (or act for the owner of) the device"


class UnknownDevice(MarketError):
    """Device is not registered."""

    fields = ("device",)
    explanation = "device is not registered"


class DeviceExists(MarketError):
    """Device id is already registered."""

    fields = ("device",)
    explanation = "device id is already registered"


class DeviceIdRange(MarketError):
    """Device id not below DEVICE_LIMIT (2**30): an order stores its device in 30 bits."""

    fields = ("device", "limit")
    explanation = "device id must be below DEVICE_LIMIT (2**30)"


class DeviceRevoked(MarketError):
    """Device was revoked by the DSO."""

    fields = ("device",)
    explanation = "device was revoked by the DSO"


class BadEnergy(MarketError):
    """Order energy_wh must be in 1..ENERGY_MAX_WH (2**32 - 1)."""

    fields = ("device", "energy")
    explanation = "order energy_wh must be in 1..ENERGY_MAX_WH (2**32 - 1 Wh)"


class BadPrice(MarketError):
    """Limit price must be in 1..PRICE_MAX."""

    fields = ("device", "price")
    explanation = "limit price must be in 1..PRICE_MAX"


class BadAmount(MarketError):
    """Amount must be > 0."""

    fields = ("amount",)
    explanation = "amount must be > 0"


class IntervalClosed(MarketError):
    """Interval is already cleared (or beyond the market's range, INTERVAL_LIMIT = 2**28)."""

    fields = ("interval",)
    explanation = "interval is already cleared (or not below INTERVAL_LIMIT = 2**28)"


class GateClosed(MarketError):
    """Order placed after its interval's gate closed.

    ``gate`` is the last time orders for the interval are accepted and ``time`` the time of
    placement, both in seconds since the market's start (the start of interval 0's
    delivery; on chain they are block timestamps, converted by the chain ledger)."""

    fields = ("interval", "gate", "time")
    explanation = "orders for an interval must be placed before its gate closes"


class GateOpen(MarketError):
    """Clearing started while the interval's gate is still open (times as in GateClosed):
    the book is final, and the operator's plan safe from late orders, only after the gate."""

    fields = ("interval", "gate", "time")
    explanation = "an interval clears only after its gate closed"


class InDebt(MarketError):
    """The account owes unpaid settlement charges: no withdrawal nor buy order until paid
    (every credit to it pays the debt first)."""

    fields = ("account", "debt")
    explanation = "an indebted account can neither withdraw nor buy until its debt is paid"


class NotReclaimable(MarketError):
    """Escrow reclaimed from an interval that is not void: it is cleared, its clearing's
    matching walk is over (its trades stand; past the deadline anyone may finish it), or its
    deadline (``reclaimAfter``, times as in GateClosed) has not passed."""

    fields = ("interval", "deadline", "time")
    explanation = "escrow is reclaimable only from an interval left uncleared past its deadline"


class BondLocked(MarketError):
    """A device's imbalance bond released while ``interval`` (at or before the last one it
    ordered in) has orders and is not settled or void, or its gate is still open; while one
    of its provisional settlements waits for a true-up; or with no bond posted: the bond pays
    its imbalance at settlement."""

    fields = ("device", "interval")
    explanation = ("a device's bond is released only once every interval up to its last "
                   "ordered one is settled or void and its estimates are trued up")


class TooManyOrders(MarketError):
    """A device's order beyond the most orders per device and interval (``MAX_ORDERS``):
    nobody floods an interval's book (and its clearing) with tiny orders."""

    fields = ("device", "interval", "max_orders")
    explanation = "a device places at most MAX_ORDERS orders per interval"


class OrderTooSmall(MarketError):
    """An order below the market's minimum order energy (``min_order_wh``): with
    ``MAX_ORDERS`` it bounds what free order spam costs the book and the clearing."""

    fields = ("device", "min_wh", "energy")
    explanation = "an order's energy_wh must be at least the market's min_order_wh"


class LockBelowMinimum(MarketError):
    """A charging session locking less than the charger contract's minimum: holding a
    charger ties up at least ``min_lock`` of the driver's money."""

    fields = ("charger", "lock", "min_lock")
    explanation = "a charging session must lock at least the contract's minimum"


class CommitClosed(MarketError):
    """A demand-response commitment after its event interval's delivery began (``close`` =
    interval * interval_s, ``time``: the market clock, both in seconds since the market's
    start): nobody commits knowing part of the interval's metering."""

    fields = ("event_id", "close", "time")
    explanation = "demand-response commitments close when the event interval begins"


class CapacityExceeded(MarketError):
    """Device's energy on this side and interval would exceed its cap."""

    fields = ("device", "cap", "requested")
    explanation = "device's energy on this side and interval would exceed its cap"


class EnvelopeExceeded(MarketError):
    """An order beyond the DSO's operating envelope of its device and interval."""

    fields = ("device", "limit", "requested")
    explanation = "order exceeds the DSO's operating envelope (Wh) for the device in that interval"


class OppositeSide(MarketError):
    """A device may not buy and sell in the same interval."""

    fields = ("device", "interval")
    explanation = "a device may not buy and sell in the same interval"


class InsufficientBalance(MarketError):
    """Free balance too low."""

    fields = ("account", "needed", "available")
    explanation = "free balance too low"


class AlreadyCleared(MarketError):
    """Interval was already cleared."""

    fields = ("interval",)
    explanation = "interval was already cleared"


class NotCleared(MarketError):
    """Interval is not cleared yet."""

    fields = ("interval",)
    explanation = "interval is not cleared yet"


class AlreadySettled(MarketError):
    """Interval was already settled."""

    fields = ("interval",)
    explanation = "interval was already settled"


class BadOrderList(MarketError):
    """Sorted order list is not the exact, ordered set of the interval's orders."""

    fields = ("side", "position", "order")
    explanation = "sorted order list is not the exact, ordered set of the interval's orders"


class UnknownTrade(MarketError):
    """No such trade."""

    fields = ("trade",)
    explanation = "no such trade"


class ClearingInProgress(MarketError):
    """Another interval's chunked clearing is under way (one at a time)."""

    fields = ("interval",)
    explanation = "finish the other interval's clearing first"


class BookChanged(MarketError):
    """Orders arrived between planning a chunked clearing and its first chunk."""

    fields = ("interval", "planned", "actual")
    explanation = "the book changed since the clearing was planned; plan again"


class CursorMismatch(MarketError):
    """A chunk (clearing, settlement, pruning) follows another cursor position than the stored one."""

    fields = ("interval", "expected", "actual")
    explanation = "a chunk before it did not run (reverted); resume from the interval's cursor"


class TradesUnpaid(MarketError):
    """A settlement chunk brought meter readings (or closed the settlement) before every
    trade of the interval was paid."""

    fields = ("interval", "paid", "total")
    explanation = "pay all of the interval's trades before its meter readings"


class SettlementInProgress(MarketError):
    """The interval's chunked settlement has started: its trades can no longer change."""

    fields = ("interval",)
    explanation = "curtail before settlement starts"


class CurtailIncrease(MarketError):
    """Curtailment may only lower a trade's energy."""

    fields = ("trade", "current", "requested")
    explanation = "curtailment may only lower a trade's energy"


class MissingMeterReading(MarketError):
    """A device that traded has no meter reading."""

    fields = ("device", "interval")
    explanation = "a device that traded has no meter reading"


class BadReadings(MarketError):
    """Meter readings must be by strictly ascending device id."""

    fields = ("position",)
    explanation = "meter readings must be by strictly ascending device id"


class BadSignature(MarketError):
    """Signature does not recover to the device's registered key."""

    fields = ("device",)
    explanation = "signature does not recover to the device's registered key"


class ReplayedNonce(MarketError):
    """Signed order's nonce is not above the device's last nonce in that interval."""

    fields = ("device", "interval", "nonce")
    explanation = "signed order's nonce is not above the device's last one in that interval (replay)"


class MeterOutOfRange(MarketError):
    """A signed meter reading claims more energy than the device's registered capacity."""

    fields = ("device", "cap", "metered")
    explanation = "meter reading beyond the device's registered capacity for the interval"


class NotPoster(MarketError):
    """Only a registered event poster (TSO, DSO) may post demand-response events."""

    fields = ("account",)
    explanation = "only the TSO or DSO may post demand-response events"


class UnknownEvent(MarketError):
    """No such demand-response event."""

    fields = ("event_id",)
    explanation = "no such demand-response event"


class NotSettled(MarketError):
    """Interval is not settled yet (certificates need metered delivery)."""

    fields = ("interval",)
    explanation = "certificates are issued only after settlement on metered energy"


class NotApproved(MarketError):
    """Operator is not approved for the owner's certificates."""

    fields = ("owner", "operator")
    explanation = "caller is neither the owner nor approved for all"


class UnsafeRecipient(MarketError):
    """Recipient contract did not accept the ERC-1155 transfer."""

    fields = ("to",)
    explanation = "recipient does not accept ERC-1155 tokens"


class NotProvisional(MarketError):
    """A true-up for a device that was not settled on an estimate (twin.market.provisional)."""

    fields = ("device", "interval")
    explanation = "the device was not settled provisionally in this interval"


class AlreadyTruedUp(MarketError):
    """A second true-up of the same device and interval (twin.market.provisional)."""

    fields = ("device", "interval")
    explanation = "the provisional settlement was already trued up"



class TrueUpExpired(MarketError):
    """A true-up after its estimate's deadline (the interval's end plus the market's true-up
    expiry), or of an estimate already made final: the estimate is the settlement."""

    fields = ("device", "interval", "deadline")
    explanation = "an estimate is trued up only until its deadline; after it the estimate is final"


class TrueUpOpen(MarketError):
    """An estimate made final before its true-up deadline passed (``deadline`` 0: the
    market's estimates never expire)."""

    fields = ("device", "interval", "deadline", "time")
    explanation = "an estimate becomes final only once its true-up deadline has passed"

#: Every error class by name (the chain ledger decodes reverts through this).
ERRORS: dict[str, type[MarketError]] = {
    cls.__name__: cls
    for cls in (
        NotOperator,
        NotDSO,
        NotDeviceOwner,
        UnknownDevice,
        DeviceExists,
        DeviceIdRange,
        DeviceRevoked,
        BadEnergy,
        BadPrice,
        BadAmount,
        IntervalClosed,
        GateClosed,
        GateOpen,
        CommitClosed,
        LockBelowMinimum,
        TooManyOrders,
        OrderTooSmall,
        InDebt,
        NotReclaimable,
        BondLocked,
        CapacityExceeded,
        EnvelopeExceeded,
        OppositeSide,
        InsufficientBalance,
        AlreadyCleared,
        NotCleared,
        AlreadySettled,
        BadOrderList,
        UnknownTrade,
        CurtailIncrease,
        MissingMeterReading,
        BadReadings,
        BadSignature,
        ReplayedNonce,
        MeterOutOfRange,
        ClearingInProgress,
        BookChanged,
        CursorMismatch,
        TradesUnpaid,
        SettlementInProgress,
        NotPoster,
        UnknownEvent,
        NotSettled,
        NotProvisional,
        AlreadyTruedUp,
        TrueUpExpired,
        TrueUpOpen,
        NotApproved,
        UnsafeRecipient,
    )
}


# --- pilot mechanisms: green-token exchange, shared-charger tariffs, green currency ---------


class NotACharger(MarketError):
    """Device is not an EV charger."""

    fields = ("device",)
    explanation = "only an EV charger can carry a charging tariff"


class TariffOutOfRange(MarketError):
    """Owner's tariff outside the bounds the operator set."""

    fields = ("charger", "price", "min_price", "max_price")
    explanation = "tariff must lie within the operator's bounds"


class TariffAboveLimit(MarketError):
    """The charger's tariff is above the driver's limit (raised in front of the session)."""

    fields = ("charger", "price", "max_price")
    explanation = "the charger's tariff is above the driver's maximum price"


class NoTariff(MarketError):
    """The charger's owner has not set a tariff (the charger is not shared)."""

    fields = ("charger",)
    explanation = "the charger's owner has not set a tariff"


class ChargerBusy(MarketError):
    """The charger already has an open charging session."""

    fields = ("charger", "session")
    explanation = "the charger already has an open charging session"


class UnknownSession(MarketError):
    """No such charging session."""

    fields = ("session",)
    explanation = "no such charging session"


class SessionClosed(MarketError):
    """The charging session was already ended and paid."""

    fields = ("session",)
    explanation = "the charging session was already ended and paid"


class AllowanceExceeded(MarketError):
    """A spender moves more of an owner's tokens than approved."""

    fields = ("owner", "spender", "needed", "available")
    explanation = "spender is not approved for that many of the owner's tokens"


class SelfTrade(MarketError):
    """The green-token exchange's counterparty (the DSO) trades with its own exchange."""

    fields = ("account",)
    explanation = "the DSO is the exchange's counterparty and cannot buy from or sell to itself"


_PILOT_ERRORS = (NotACharger, TariffOutOfRange, TariffAboveLimit, NoTariff, ChargerBusy, UnknownSession,
                 SessionClosed, AllowanceExceeded, SelfTrade)  # fmt: skip
ERRORS.update({cls.__name__: cls for cls in _PILOT_ERRORS})
__all__ += [cls.__name__ for cls in _PILOT_ERRORS]

#: Custom errors of the contracts that are not market rules (no reference counterpart): the
#: settlement token's own balance and allowance checks, a reentrancy guard, a library's
#: hint check and a mechanism switch. The chain client raises them as ``ChainRevert``.
CHAIN_ONLY_ERRORS: dict[str, str] = {
    "InsufficientTokens": "SettlementToken: a wallet pays more than it holds",
    "InsufficientAllowance": "SettlementToken: a spender moves more than approved",
    "Reentrancy": "AssetToken: reentrancy guard",
    "BadHint": "CdaMatching: an insertion hint that does not fit the book",
    "WrongMechanism": "EnergyMarket: a call of the other matching rule",
    "ZeroOwner": "DeviceRegistry: a device registered to address 0x0 (the reference's owners "
                 "are account indices, which always have an address)",
    "BatchLengths": "DeviceRegistry: registerDevices/setSigners arrays of different lengths "
                    "(the client builds them from one list)",
    "MintBatchLengths": "SettlementToken: mintBatch arrays of different lengths",
}
