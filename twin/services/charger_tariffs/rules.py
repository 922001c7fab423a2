"""Bilateral tariffs set by asset owners (the Share&Charge pilot): reference.

Private EV chargers (registered ``EV`` devices) are shared. Each charger's owner posts a
tariff per MWh within the operator's bounds ``[tariff_min_per_mwh, tariff_max_per_mwh]``;
drivers keep money in escrow with the contract; a driver starts a charging session at a
charger with a cap on its energy, which locks ``payment(max_wh, tariff)`` of the driver's
free escrow at the tariff *in force when the session starts*; the meter operator (the DSO)
ends the session with the metered session energy, and ``payment(metered_wh, tariff)`` goes
from the driver's escrow to the owner's wallet, the rest of the lock back to the driver's
free escrow. A tariff change applies only to sessions started after it. One open session
per charger.

Identities (exact): the contract's money == sum of free + locked escrow; every session's
``amount + released == locked``; owners received exactly the sum of their sessions'
amounts.

Errors (same names and arguments on chain, ``ChargerTariffs.sol``): ``UnknownDevice``,
``NotACharger``, ``NotDeviceOwner``, ``TariffOutOfRange``, ``NoTariff``, ``ChargerBusy``,
``BadEnergy(device, energy)`` (a cap <= 0), ``BadAmount``, ``InsufficientBalance``,
``NotDSO``, ``UnknownSession``, ``SessionClosed``, ``MeterOutOfRange(device, cap,
metered)``. Domain: energies and money below 2**64, prices within 0..PRICE_MAX.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind
from twin.market.units import PRICE_MAX, payment
from twin.market.wallets import CONTRACT_WALLET, Money

__all__ = ["CONTRACT_WALLET", "ChargerTariffs", "ChargingSession", "check_bounds"]



@dataclass(frozen=True, slots=True)
class ChargingSession:
    """A charging session; ``metered_wh``/``amount`` are 0 while it is open."""

    session_id: int
    charger: int
    owner: int
    driver: int
    price_per_mwh: int  # the owner's tariff when the session started
    max_wh: int
    locked: int  # payment(max_wh, price) held from the driver's escrow
    open: bool
    metered_wh: int
    amount: int  # paid to the owner


def check_bounds(tariff_min_per_mwh: int, tariff_max_per_mwh: int) -> None:
    """``0 <= min <= max <= PRICE_MAX`` (``BadPrice(0, price)`` names the bad bound)."""
    if not 0 <= tariff_min_per_mwh <= PRICE_MAX:
        raise e.BadPrice(0, tariff_min_per_mwh)
    if not tariff_min_per_mwh <= tariff_max_per_mwh <= PRICE_MAX:
        raise e.BadPrice(0, tariff_max_per_mwh)


class ChargerTariffs:
    """Shared chargers with owner tariffs (see the module docstring)."""

    def __init__(
        self,
        *,
        devices: Mapping[int, Device],
        money: Money,
        tariff_min_per_mwh: int,
        tariff_max_per_mwh: int,
        meter_operator: int = DSO_ACCOUNT,
        min_lock: int = 0,
    ) -> None:
        """``min_lock``: the least money a session locks (``LockBelowMinimum``), so holding a
        charger with a tiny session ties up real money."""
        check_bounds(tariff_min_per_mwh, tariff_max_per_mwh)
        if min_lock < 0:
            raise ValueError("min_lock must be >= 0")
        self.min_lock = min_lock
        self.devices = devices
        self.money = money
        self.tariff_min_per_mwh = tariff_min_per_mwh
        self.tariff_max_per_mwh = tariff_max_per_mwh
        self.meter_operator = meter_operator
        self._tariff: dict[int, int] = {}
        self._open: dict[int, int] = {}  # charger -> open session id
        self._sessions: list[ChargingSession] = []
        self._free: dict[int, int] = defaultdict(int)
        self._locked: dict[int, int] = defaultdict(int)
        self.holdings = 0  # money held by the contract (= sum of free + locked)

    # --- read-outs --------------------------------------------------------------------
    def tariff(self, charger: int) -> int | None:
        return self._tariff.get(charger)

    def escrow(self, driver: int) -> tuple[int, int]:
        """``(free, locked)`` escrow of a driver."""
        return self._free.get(driver, 0), self._locked.get(driver, 0)

    def session(self, session_id: int) -> ChargingSession:
        if not 0 <= session_id < len(self._sessions):
            raise e.UnknownSession(session_id)
        return self._sessions[session_id]

    def open_session(self, charger: int) -> int | None:
        return self._open.get(charger)

    def _charger(self, charger: int) -> Device:
        dev = self.devices.get(charger)
        if dev is None:
            raise e.UnknownDevice(charger)
        if dev.kind != DeviceKind.EV:
            raise e.NotACharger(charger)
        return dev

    # --- owners -----------------------------------------------------------------------
    def set_tariff(self, charger: int, price_per_mwh: int, *, sender: int) -> None:
        dev = self._charger(charger)
        if sender != dev.owner:
            raise e.NotDeviceOwner(charger, sender)
        if not self.tariff_min_per_mwh <= price_per_mwh <= self.tariff_max_per_mwh:
            raise e.TariffOutOfRange(
                charger, price_per_mwh, self.tariff_min_per_mwh, self.tariff_max_per_mwh
            )
        self._tariff[charger] = price_per_mwh

    # --- drivers' escrow ----------------------------------------------------------------
    def deposit(self, driver: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        cash = self.money.balance_of(driver)
        if cash < amount:
            raise e.InsufficientBalance(driver, amount, cash)
        self.money.transfer(driver, CONTRACT_WALLET, amount)
        self._free[driver] += amount
        self.holdings += amount

    def withdraw(self, driver: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount)
        free = self._free.get(driver, 0)
        if free < amount:
            raise e.InsufficientBalance(driver, amount, free)
        self._free[driver] = free - amount
        self.holdings -= amount
        self.money.transfer(CONTRACT_WALLET, driver, amount)

    # --- sessions -----------------------------------------------------------------------
    def start_session(self, charger: int, max_wh: int, *, driver: int,
                      max_price_per_mwh: int = 2**256 - 1) -> ChargingSession:
        """A session at the tariff in force, refused above the driver's ``max_price_per_mwh``
        (``TariffAboveLimit``: a tariff raised in front of the session); the price is locked."""
        self._charger(charger)
        price = self._tariff.get(charger)
        if price is None:
            raise e.NoTariff(charger)
        if price > max_price_per_mwh:
            raise e.TariffAboveLimit(charger, price, max_price_per_mwh)
        busy = self._open.get(charger)
        if busy is not None:
            raise e.ChargerBusy(charger, busy)
        if max_wh <= 0:
            raise e.BadEnergy(charger, max_wh)
        lock = payment(max_wh, price)
        if lock < self.min_lock:
            raise e.LockBelowMinimum(charger, lock, self.min_lock)
        free = self._free.get(driver, 0)
        if free < lock:
            raise e.InsufficientBalance(driver, lock, free)
        self._free[driver] = free - lock
        self._locked[driver] += lock
        s = ChargingSession(
            session_id=len(self._sessions), charger=charger, owner=self.devices[charger].owner,
            driver=driver, price_per_mwh=price, max_wh=max_wh, locked=lock, open=True,
            metered_wh=0, amount=0,
        )  # fmt: skip
        self._sessions.append(s)
        self._open[charger] = s.session_id
        return s

    def end_session(
        self, session_id: int, metered_wh: int, *, sender: int | None = None
    ) -> ChargingSession:
        """The meter operator ends the session on its metered energy; the owner is paid."""
        if sender is not None and sender != self.meter_operator:
            raise e.NotDSO(sender)
        s = self.session(session_id)
        if not s.open:
            raise e.SessionClosed(session_id)
        if metered_wh < 0:
            raise e.BadEnergy(s.charger, metered_wh)
        if metered_wh > s.max_wh:
            raise e.MeterOutOfRange(s.charger, s.max_wh, metered_wh)
        amount = payment(metered_wh, s.price_per_mwh)
        self._locked[s.driver] -= s.locked
        self._free[s.driver] += s.locked - amount
        self.holdings -= amount
        self.money.transfer(CONTRACT_WALLET, s.owner, amount)
        done = ChargingSession(
            session_id=s.session_id, charger=s.charger, owner=s.owner, driver=s.driver,
            price_per_mwh=s.price_per_mwh, max_wh=s.max_wh, locked=s.locked, open=False,
            metered_wh=metered_wh, amount=amount,
        )  # fmt: skip
        self._sessions[session_id] = done
        del self._open[s.charger]
        return done

