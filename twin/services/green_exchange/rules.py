"""Fixed-price green-token exchange through the DSO (the EU Scanergy pilot): reference.

Green tokens, 1 token = 1 kWh (``WH_PER_TOKEN`` = 1000 Wh), no decimals:

* ``record_meters`` (the DSO, the meter operator): a PV device's metered injection is added
  to the device's carry and each whole kWh of it is minted as one token to the device's
  owner — the surplus green energy paid in tokens. The Wh remainder stays in the carry for
  the device's next injection (never rounded up, never lost). A device's metered
  consumption is added to its *uncovered* consumption, against which tokens can be
  redeemed. Injection of other kinds (storage, V2G) mints nothing: it is not green.
  Readings go by strictly ascending device id within an interval, across calls
  (``BadReadings``), so an interval can be recorded in chunks but no reading counts twice.
* ``set_prices`` (the DSO): moves both prices -- the token exchanged at a market rate
  (``market.services.green_exchange.rate_adjustment``); fixed prices never call it.
* ``sell``: a holder sells tokens to the DSO at the fixed ``buy_price_per_mwh`` (the DSO
  buys the green surplus): tokens to the DSO, ``payment(tokens * 1000, buy_price)`` money
  from the DSO's wallet to the seller.
* ``buy``: a consumer buys tokens from the DSO's stock at the fixed ``sell_price_per_mwh``:
  tokens from the DSO, ``payment(tokens * 1000, sell_price)`` money to the DSO.
* ``redeem``: a device's owner burns tokens against the device's uncovered metered
  consumption (whole kWh only); the redeemed kWh are green-supplied.

Identities (exact, integers): ``total_supply == minted - redeemed`` ==
``sum(balances)``; ``WH_PER_TOKEN * minted + sum(carry) == delivered_wh`` (metered green
delivery); the DSO's wallet changed by ``received - paid``. The exchange itself holds no
money: every payment is one wallet-to-wallet transfer.

Prices are what the DSO pays for and charges for a green kWh *token*. The physical energy
stays with the market's own settlement (imbalance against the DSO at the retail and
feed-in tariffs): a scenario in which the exchange is the only payment for surplus sets
``market.feed_in_price_per_mwh`` to 0.

Errors (same names and arguments on chain, ``GreenTokenExchange.sol``): ``NotDSO``,
``BadReadings(position)``, ``UnknownDevice``, ``BadAmount``, ``InsufficientBalance(account,
needed, available)`` (tokens or money), ``NotDeviceOwner``, ``CapacityExceeded(device,
uncovered_wh, requested_wh)``. Domain: readings within int64, token amounts below 2**64.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind
from twin.market.units import PRICE_MAX, payment
from twin.market.wallets import Money

__all__ = ["GREEN_KINDS", "WH_PER_TOKEN", "GreenDelivery", "GreenExchange", "check_prices"]

WH_PER_TOKEN = 1000
#: Device kinds whose metered injection is green (mints tokens).
GREEN_KINDS = frozenset({DeviceKind.PV})


@dataclass(frozen=True, slots=True)
class GreenDelivery:
    """One PV device's metered injection recorded for one interval."""

    interval: int
    device_id: int
    owner: int
    injected_wh: int
    tokens: int  # whole kWh minted from the carry plus this injection


def check_prices(buy_price_per_mwh: int, sell_price_per_mwh: int) -> None:
    """Both fixed prices in 1..PRICE_MAX and the DSO's buy price at most its sell price
    (else buy-then-sell drains the DSO): ``BadPrice(0, price)``."""
    for price in (buy_price_per_mwh, sell_price_per_mwh):
        if not 0 < price <= PRICE_MAX:
            raise e.BadPrice(0, price)
    if buy_price_per_mwh > sell_price_per_mwh:
        raise e.BadPrice(0, buy_price_per_mwh)


class GreenExchange:
    """The exchange (see the module docstring); ``devices`` is the live device registry."""

    def __init__(
        self,
        *,
        devices: Mapping[int, Device],
        money: Money,
        buy_price_per_mwh: int,
        sell_price_per_mwh: int,
        dso: int = DSO_ACCOUNT,
    ) -> None:
        check_prices(buy_price_per_mwh, sell_price_per_mwh)
        self.devices = devices
        self.money = money
        self.buy_price_per_mwh = buy_price_per_mwh
        self.sell_price_per_mwh = sell_price_per_mwh
        self.dso = dso
        self._balance: dict[int, int] = defaultdict(int)
        self._carry: dict[int, int] = defaultdict(int)
        self._uncovered: dict[int, int] = defaultdict(int)
        self._green_supplied: dict[int, int] = defaultdict(int)
        self._last: dict[int, int] = {}  # interval -> last device id recorded
        self.minted = 0
        self.redeemed = 0
        self.delivered_wh = 0
        self.paid = 0  # money the DSO paid for tokens
        self.received = 0  # money the DSO received for tokens

    # --- read-outs --------------------------------------------------------------------
    def balance_of(self, account: int) -> int:
        return self._balance.get(account, 0)

    def set_prices(self, buy_price_per_mwh: int, sell_price_per_mwh: int, *,
                   sender: int = DSO_ACCOUNT) -> None:
        """The DSO moves the token's prices (``NotDSO``, ``BadPrice`` as the constructor)."""
        if sender != self.dso:
            raise e.NotDSO(sender)
        check_prices(buy_price_per_mwh, sell_price_per_mwh)
        self.buy_price_per_mwh = buy_price_per_mwh
        self.sell_price_per_mwh = sell_price_per_mwh

    @property
    def total_supply(self) -> int:
        return self.minted - self.redeemed

    def carry_wh(self, device_id: int) -> int:
        return self._carry.get(device_id, 0)

    def uncovered_wh(self, device_id: int) -> int:
        return self._uncovered.get(device_id, 0)

    def green_supplied_wh(self, device_id: int) -> int:
        return self._green_supplied.get(device_id, 0)

    # --- the DSO records metered energy -------------------------------------------------
    def record_meters(
        self, interval: int, readings: Sequence[tuple[int, int]], *, sender: int | None = None
    ) -> list[GreenDelivery]:
        """Record ``(device_id, metered_wh)`` readings (consumption positive); returns the
        PV deliveries with the tokens minted to their owners."""
        if sender is not None and sender != self.dso:
            raise e.NotDSO(sender)
        last = self._last.get(interval, -1)
        for k, (device_id, _) in enumerate(readings):
            if device_id <= last:
                raise e.BadReadings(k)
            last = device_id
            if device_id not in self.devices:
                raise e.UnknownDevice(device_id)
        out: list[GreenDelivery] = []
        for device_id, metered_wh in readings:
            self._last[interval] = device_id
            dev = self.devices[device_id]
            if metered_wh > 0:
                self._uncovered[device_id] += metered_wh
            elif metered_wh < 0 and dev.kind in GREEN_KINDS:
                n, self._carry[device_id] = divmod(self._carry[device_id] - metered_wh, WH_PER_TOKEN)
                self._balance[dev.owner] += n
                self.minted += n
                self.delivered_wh -= metered_wh
                out.append(GreenDelivery(interval, device_id, dev.owner, -metered_wh, n))
        return out

    # --- trading with the DSO -----------------------------------------------------------
    def sell(self, account: int, tokens: int) -> int:
        """``account`` sells ``tokens`` to the DSO; returns the money it received."""
        if tokens < 0:  # no uint256: the chain client refuses it before sending
            raise e.BadAmount(tokens)
        if account == self.dso:
            raise e.SelfTrade(account)
        if tokens == 0:
            raise e.BadAmount(tokens)
        have = self.balance_of(account)
        if have < tokens:
            raise e.InsufficientBalance(account, tokens, have)
        amount = payment(tokens * WH_PER_TOKEN, self.buy_price_per_mwh)
        cash = self.money.balance_of(self.dso)
        if cash < amount:
            raise e.InsufficientBalance(self.dso, amount, cash)
        self._balance[account] -= tokens
        self._balance[self.dso] += tokens
        self.money.transfer(self.dso, account, amount)
        self.paid += amount
        return amount

    def buy(self, account: int, tokens: int) -> int:
        """``account`` buys ``tokens`` from the DSO's stock; returns the money it paid."""
        if tokens < 0:  # no uint256: the chain client refuses it before sending
            raise e.BadAmount(tokens)
        if account == self.dso:
            raise e.SelfTrade(account)
        if tokens == 0:
            raise e.BadAmount(tokens)
        stock = self.balance_of(self.dso)
        if stock < tokens:
            raise e.InsufficientBalance(self.dso, tokens, stock)
        amount = payment(tokens * WH_PER_TOKEN, self.sell_price_per_mwh)
        cash = self.money.balance_of(account)
        if cash < amount:
            raise e.InsufficientBalance(account, amount, cash)
        self._balance[self.dso] -= tokens
        self._balance[account] += tokens
        self.money.transfer(account, self.dso, amount)
        self.received += amount
        return amount

    def transfer(self, sender: int, to: int, tokens: int) -> None:
        if tokens <= 0:
            raise e.BadAmount(tokens)
        have = self.balance_of(sender)
        if have < tokens:
            raise e.InsufficientBalance(sender, tokens, have)
        self._balance[sender] -= tokens
        self._balance[to] += tokens

    # --- consumers redeem -------------------------------------------------------------
    def redeem(self, device_id: int, tokens: int, *, sender: int) -> None:
        """The device's owner burns ``tokens`` against the device's uncovered consumption."""
        dev = self.devices.get(device_id)
        if dev is None:
            raise e.UnknownDevice(device_id)
        if sender != dev.owner:
            raise e.NotDeviceOwner(device_id, sender)
        if tokens <= 0:
            raise e.BadAmount(tokens)
        uncovered = self.uncovered_wh(device_id)
        if tokens * WH_PER_TOKEN > uncovered:
            raise e.CapacityExceeded(device_id, uncovered, tokens * WH_PER_TOKEN)
        have = self.balance_of(sender)
        if have < tokens:
            raise e.InsufficientBalance(sender, tokens, have)
        self._balance[sender] -= tokens
        self._uncovered[device_id] -= tokens * WH_PER_TOKEN
        self._green_supplied[device_id] += tokens * WH_PER_TOKEN
        self.redeemed += tokens
