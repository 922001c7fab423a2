"""The imbalance bond's terms (#19), one rule for both ledgers.

A device posts its bond with its first order: ``intervals`` intervals at its registered
rating (its per-interval energy cap, ``capacity_w * interval_s // 3600``) at the retail
price, and at least ``floor`` (money). An estimate settled provisionally and not trued up
within ``true_up_expiry_s`` seconds of its interval's end can be made final by anyone
(``finalize_estimate``): the estimate is the settlement and the device's bond no longer waits
for it (0: estimates never expire). On chain the three are one word,
``EnergyMarket.bondTerms`` (:meth:`BondTerms.packed`, the intervals as their rate
``intervals * retail``), read by ``MarketSettlement.bondOf``.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.market.units import payment

__all__ = ["BondTerms"]


@dataclass(frozen=True, slots=True)
class BondTerms:
    """Imbalance-bond terms: ``floor`` money, ``intervals`` at the device's rating, and the
    true-up expiry in seconds after the interval's end (0: never)."""

    floor: int = 0
    intervals: int = 0
    true_up_expiry_s: int = 0

    def __post_init__(self) -> None:
        for name, value, bits in (("floor", self.floor, 128), ("intervals", self.intervals, 64),
                                  ("true_up_expiry_s", self.true_up_expiry_s, 64)):
            if not 0 <= value < 2**bits:
                raise ValueError(f"bond terms: {name} must be in 0..2**{bits}-1, got {value}")

    @property
    def any_bond(self) -> bool:
        """Whether any device posts a bond (floor or intervals set)."""
        return self.floor > 0 or self.intervals > 0

    def bond_of(self, *, cap_wh: int, retail_price_per_mwh: int) -> int:
        """The bond of a device whose per-interval energy cap is ``cap_wh``."""
        return max(self.floor, payment(cap_wh * self.intervals, retail_price_per_mwh))

    def deadline_s(self, *, interval: int, interval_s: int) -> int | None:
        """Last market-clock second at which ``interval``'s estimates may be trued up
        (``None``: never expire)."""
        if self.true_up_expiry_s == 0:
            return None
        return (interval + 1) * interval_s + self.true_up_expiry_s

    def packed(self, *, retail_price_per_mwh: int) -> int:
        """The one-word form ``EnergyMarket.bondTerms``: the floor in bits 0..127, the rate
        ``intervals * retail_price_per_mwh`` in bits 128..191 (a cap at that rate is
        ``intervals`` caps at retail, with the same rounding), the expiry in 192..255."""
        rate = self.intervals * retail_price_per_mwh
        if not 0 <= rate < 2**64:
            raise ValueError(f"bond terms: intervals * retail price ({self.intervals} * "
                             f"{retail_price_per_mwh}) must be below 2**64")
        return self.floor | rate << 128 | self.true_up_expiry_s << 192

    @classmethod
    def unpack(cls, word: int, *, retail_price_per_mwh: int) -> BondTerms:
        """The terms of an ``EnergyMarket.bondTerms`` word (a market whose retail price is 0
        posts no bond by rating: its intervals read as 0)."""
        rate = (word >> 128) & (2**64 - 1)
        return cls(floor=word & (2**128 - 1),
                   intervals=rate // retail_price_per_mwh if retail_price_per_mwh else 0,
                   true_up_expiry_s=word >> 192)
