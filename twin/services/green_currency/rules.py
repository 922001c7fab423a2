"""Green-currency incentives (the Shanghai VPP platform): reference.

An ERC-20-like incentive token with 6 decimals (base unit: one micro-token), minted only by
the market operator to the owners of devices, for

* renewable consumption (``reward_renewable(interval, ...)``): e.g. the Wh a device bought
  from PV sellers in a settled interval, at ``tokens_per_kwh_renewable``;
* delivered demand response (``reward_dr(event_id, ...)``): the metered reduction of a
  device in a DR event, at ``tokens_per_kwh_dr``.

Rates are integers in micro-tokens per kWh. An award of ``wh`` to a device mints
``(carry + wh * rate) // 1000`` micro-tokens to the device's owner and keeps the remainder
in the device's carry (one carry per device and reason), so nothing is rounded up and
nothing is lost over time. Within one reason and reference (interval or event), awards go by
strictly ascending device id, across calls (``BadReadings(position)``): a reward can be sent
in chunks, but no device is rewarded twice for the same interval or event.

The token is transferable (``transfer``, ``approve``, ``transfer_from``) and burnable by its
holder (``burn``: perks redeemed off chain). Identity: ``total_supply == minted - burned ==
sum(balances)``.

Errors (same names and arguments on chain, ``GreenCurrency.sol``): ``NotOperator``,
``BadReadings``, ``UnknownDevice``, ``BadEnergy(device, energy)`` (a negative award),
``BadAmount``, ``InsufficientBalance``, ``AllowanceExceeded``. Domain: awards below 2**64 Wh.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from twin.market import errors as e
from twin.market.types import OPERATOR_ACCOUNT, Device

__all__ = ["DR", "RATE_MAX", "RENEWABLE", "GreenAward", "GreenCurrency", "Reason", "check_rates"]

Reason = Literal[0, 1]
RENEWABLE: Reason = 0
DR: Reason = 1
#: Highest rate accepted: 10**6 tokens per kWh, in micro-tokens.
RATE_MAX = 10**12
_WH_PER_KWH = 1000


@dataclass(frozen=True, slots=True)
class GreenAward:
    """Tokens minted to a device's owner for one interval (renewable) or event (DR)."""

    reason: int  # RENEWABLE or DR
    ref: int  # interval (renewable) or event id (DR)
    device_id: int
    owner: int
    energy_wh: int
    amount: int  # micro-tokens minted


def check_rates(tokens_per_kwh_renewable: int, tokens_per_kwh_dr: int) -> None:
    """Both rates in 0..RATE_MAX micro-tokens per kWh (``BadAmount(rate)``)."""
    for rate in (tokens_per_kwh_renewable, tokens_per_kwh_dr):
        if not 0 <= rate <= RATE_MAX:
            raise e.BadAmount(rate)


class GreenCurrency:
    """The incentive token (see the module docstring); ``devices`` is the live registry."""

    def __init__(
        self,
        *,
        devices: Mapping[int, Device],
        tokens_per_kwh_renewable: int,
        tokens_per_kwh_dr: int,
        operator: int = OPERATOR_ACCOUNT,
    ) -> None:
        check_rates(tokens_per_kwh_renewable, tokens_per_kwh_dr)
        self.devices = devices
        self.rates = (tokens_per_kwh_renewable, tokens_per_kwh_dr)
        self.operator = operator
        self._balance: dict[int, int] = defaultdict(int)
        self._allowance: dict[tuple[int, int], int] = defaultdict(int)
        self._carry: dict[tuple[int, int], int] = defaultdict(int)  # (reason, device)
        self._last: dict[tuple[int, int], int] = {}  # (reason, ref) -> last device
        self.minted = 0
        self.burned = 0

    @property
    def total_supply(self) -> int:
        return self.minted - self.burned

    def balance_of(self, account: int) -> int:
        return self._balance.get(account, 0)

    def allowance(self, owner: int, spender: int) -> int:
        return self._allowance.get((owner, spender), 0)

    def carry(self, reason: int, device_id: int) -> int:
        return self._carry.get((reason, device_id), 0)

    # --- minting ----------------------------------------------------------------------
    def reward_renewable(
        self, interval: int, awards: Sequence[tuple[int, int]], *, sender: int | None = None
    ) -> list[GreenAward]:
        """``(device_id, wh)`` of renewable consumption in ``interval``."""
        return self._reward(RENEWABLE, interval, awards, sender)

    def reward_dr(
        self, event_id: int, awards: Sequence[tuple[int, int]], *, sender: int | None = None
    ) -> list[GreenAward]:
        """``(device_id, wh)`` of metered demand-response reduction in event ``event_id``."""
        return self._reward(DR, event_id, awards, sender)

    def _reward(
        self, reason: int, ref: int, awards: Sequence[tuple[int, int]], sender: int | None
    ) -> list[GreenAward]:
        if sender is not None and sender != self.operator:
            raise e.NotOperator(sender)
        last = self._last.get((reason, ref), -1)
        for k, (device_id, wh) in enumerate(awards):
            if device_id <= last:
                raise e.BadReadings(k)
            last = device_id
            if device_id not in self.devices:
                raise e.UnknownDevice(device_id)
            if wh < 0:
                raise e.BadEnergy(device_id, wh)
        out: list[GreenAward] = []
        rate = self.rates[reason]
        for device_id, wh in awards:
            self._last[(reason, ref)] = device_id
            owner = self.devices[device_id].owner
            amount, self._carry[(reason, device_id)] = divmod(
                self._carry[(reason, device_id)] + wh * rate, _WH_PER_KWH
            )
            self._balance[owner] += amount
            self.minted += amount
            out.append(GreenAward(reason, ref, device_id, owner, wh, amount))
        return out

    # --- ERC-20 -------------------------------------------------------------------------
    def transfer(self, sender: int, to: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        self._move(sender, to, amount)

    def approve(self, owner: int, spender: int, amount: int) -> None:
        if amount < 0:
            raise e.BadAmount(amount)
        self._allowance[(owner, spender)] = amount

    def transfer_from(self, spender: int, owner: int, to: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        allowed = self.allowance(owner, spender)
        if allowed < amount:
            raise e.AllowanceExceeded(owner, spender, amount, allowed)
        self._move(owner, to, amount)
        self._allowance[(owner, spender)] = allowed - amount

    def burn(self, holder: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        have = self.balance_of(holder)
        if have < amount:
            raise e.InsufficientBalance(holder, amount, have)
        self._balance[holder] = have - amount
        self.burned += amount

    def _move(self, sender: int, to: int, amount: int) -> None:
        have = self.balance_of(sender)
        if have < amount:
            raise e.InsufficientBalance(sender, amount, have)
        self._balance[sender] = have - amount
        self._balance[to] += amount
