"""GreenCertificate reference (ERC-1155 semantics): one certificate per delivered renewable
kWh, transferred with the trade to the buyer, retirable.

Token id = the delivery interval (the vintage). Only metered delivery counts: for each
settled interval, a renewable seller's delivered energy is ``min(traded, metered
injection)``, allocated to its trades in trade-id order; each trade's delivered Wh are added
to the seller's carry and whole kWh of it are minted to the trade's buyer (the Wh remainder
carries to the seller's next trade, so no Wh is counted twice and none is lost). Retiring
burns a holder's certificates for good (a claim of green consumption).

The contract mints straight to the buyer, so "issued to the seller, transferred with the
trade" is one step; ``last_issue`` keeps, per trade of the latest ``issue``, the seller, the
buyer, the Wh certified and the certificates minted (the rows of a run's ``certificates``
table).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.types import Device, DeviceKind, Trade

__all__ = ["RENEWABLE", "WH_PER_CERTIFICATE", "CertificateIssue", "CertificateLedger"]

WH_PER_CERTIFICATE = 1000
RENEWABLE = frozenset({DeviceKind.PV})


@dataclass(frozen=True, slots=True)
class CertificateIssue:
    """One renewable trade's part of an interval's issuance."""

    trade_id: int
    seller_device: int
    seller: int  # owner account of the seller device
    buyer_device: int
    buyer: int  # owner account of the buyer device: the holder
    delivered_wh: int  # metered delivery of the trade certified now
    count: int  # certificates minted for it (carry + delivered) // 1000


class CertificateLedger:
    def __init__(self) -> None:
        self.last_issue: list[CertificateIssue] = []
        self._balance: dict[tuple[int, int], int] = defaultdict(int)  # (holder, vintage)
        self._carry_wh: dict[int, int] = defaultdict(int)  # seller device -> Wh not yet certified
        self._issued_intervals: set[int] = set()
        self.minted = 0
        self.retired = 0

    def balance_of(self, holder: int, vintage: int) -> int:
        return self._balance.get((holder, vintage), 0)

    def issue(
        self,
        interval: int,
        trades: Sequence[Trade],
        metered_wh: Mapping[int, int],
        devices: Mapping[int, Device],
    ) -> dict[int, int]:
        """Mint the interval's certificates to the buyers (owner -> count); once per interval."""
        if interval in self._issued_intervals:
            raise e.AlreadySettled(interval)
        injected = {d: max(0, -w) for d, w in metered_wh.items()}
        minted: dict[int, int] = defaultdict(int)
        detail: list[CertificateIssue] = []
        for t in sorted(trades, key=lambda t: t.trade_id):
            seller = devices[t.seller_device]
            if seller.kind not in RENEWABLE or t.energy_wh <= 0:
                continue
            delivered = min(t.energy_wh, injected.get(t.seller_device, 0))
            injected[t.seller_device] = injected.get(t.seller_device, 0) - delivered
            carry = self._carry_wh[t.seller_device] + delivered
            n, self._carry_wh[t.seller_device] = divmod(carry, WH_PER_CERTIFICATE)
            buyer = devices[t.buyer_device].owner
            detail.append(CertificateIssue(t.trade_id, t.seller_device, seller.owner,
                                           t.buyer_device, buyer, delivered, n))
            if n:
                self._balance[(buyer, interval)] += n
                minted[buyer] += n
                self.minted += n
        self._issued_intervals.add(interval)
        self.last_issue = detail
        return dict(minted)

    def transfer(self, sender: int, to: int, vintage: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        have = self.balance_of(sender, vintage)
        if have < amount:
            raise e.InsufficientBalance(sender, amount, have)
        self._balance[(sender, vintage)] -= amount
        self._balance[(to, vintage)] += amount

    def retire(self, holder: int, vintage: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        have = self.balance_of(holder, vintage)
        if have < amount:
            raise e.InsufficientBalance(holder, amount, have)
        self._balance[(holder, vintage)] -= amount
        self.retired += amount

    def outstanding(self) -> int:
        return sum(self._balance.values())
