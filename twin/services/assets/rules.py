"""AssetToken reference: real-world-asset shares (a PV plant, a community battery) with the
asset's market revenue distributed pro rata and pulled by the holders.

Integer-exact "revenue per share" accounting (the pattern of dividend-paying tokens):
``acc`` grows by ``amount * MAGNITUDE // total_shares`` per distribution; a holder's
claimable money is ``(acc * shares + correction) // MAGNITUDE - claimed``, where the
correction keeps past revenue with the seller of shares when they move. Both divisions
floor, so rounding never favours a holder: ``sum(claimed) + sum(claimable) + dust ==
sum(distributed)`` exactly, with ``0 <= dust < holders + distributions`` micro-units.
Pull, not push: a claim moves only the caller's own money (no loop over holders, nothing a
reverting receiver can block).
"""

from __future__ import annotations

from collections import defaultdict

from twin.market import errors as e

__all__ = ["MAGNITUDE", "AssetLedger"]

MAGNITUDE = 2**128


class AssetLedger:
    """One tokenized asset: fixed share supply, minted to the issuer, transferable."""

    def __init__(self, *, asset_id: int, issuer: int, total_shares: int) -> None:
        if total_shares <= 0:
            raise e.BadAmount(total_shares)
        self.asset_id = asset_id
        self.total_shares = total_shares
        self._shares: dict[int, int] = defaultdict(int, {issuer: total_shares})
        self._correction: dict[int, int] = defaultdict(int)
        self._claimed: dict[int, int] = defaultdict(int)
        self._acc = 0
        self.distributed = 0

    def shares(self, holder: int) -> int:
        return self._shares.get(holder, 0)

    def transfer(self, sender: int, to: int, shares: int) -> None:
        if shares <= 0:
            raise e.BadAmount(shares)
        have = self._shares.get(sender, 0)
        if have < shares:
            raise e.InsufficientBalance(sender, shares, have)
        self._shares[sender] -= shares
        self._shares[to] += shares
        self._correction[sender] += self._acc * shares
        self._correction[to] -= self._acc * shares

    def distribute(self, amount: int, *, payer: int | None = None) -> None:
        """Revenue of the asset (micro-units) shared pro rata among the current holders.

        ``payer``: who pays it in (the chain pulls it from that wallet); the reference books
        no wallets, so it only names the payer (a run's money moves: twin/services/assets/service.py)."""
        if amount <= 0:
            raise e.BadAmount(amount)
        self._acc += amount * MAGNITUDE // self.total_shares
        self.distributed += amount

    def claimable(self, holder: int) -> int:
        earned = (
            self._acc * self._shares.get(holder, 0) + self._correction.get(holder, 0)
        ) // MAGNITUDE
        return earned - self._claimed.get(holder, 0)

    def claim(self, holder: int) -> int:
        """Pay out what the holder has earned so far (0 is a no-op, never a double pay)."""
        amount = self.claimable(holder)
        self._claimed[holder] += amount
        return amount

    def claimed(self, holder: int) -> int:
        return self._claimed.get(holder, 0)

    def holders(self) -> list[int]:
        return sorted(h for h in set(self._shares) | set(self._claimed))

    def dust(self) -> int:
        """Distributed money no holder can claim (floor rounding), kept by the asset."""
        return (
            self.distributed
            - sum(self._claimed.values())
            - sum(self.claimable(h) for h in self.holders())
        )
