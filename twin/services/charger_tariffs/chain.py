"""The ``ChargerTariffs`` contract
behind the methods of :class:`~twin.services.charger_tariffs.rules.ChargerTariffs`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3.contract import Contract

from twin.chain.clients import CheckedClient, not_negative
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT
from twin.services.charger_tariffs.rules import ChargingSession, check_bounds


class ChainChargerTariffs(CheckedClient):
    """:class:`~twin.services.charger_tariffs.rules.ChargerTariffs` on chain (``ChargerTariffs.sol``)."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        super().__init__(led, contract)
        self.tariff_min_per_mwh = self._uint("tariffMin")
        self.tariff_max_per_mwh = self._uint("tariffMax")
        self.meter_operator = DSO_ACCOUNT

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, tariff_min_per_mwh: int, tariff_max_per_mwh: int,
        min_lock: int = 0,
    ) -> ChainChargerTariffs:
        if min_lock < 0:
            raise ValueError("min_lock must be >= 0")
        return cls(led, cls._deploy_checked(
            led, "ChargerTariffs",
            check=lambda: check_bounds(tariff_min_per_mwh, tariff_max_per_mwh),
            args=(led.token.address, led.registry.address, tariff_min_per_mwh, tariff_max_per_mwh,
                  min_lock),
        ))  # fmt: skip

    # --- read-outs --------------------------------------------------------------------
    def tariff(self, charger: int) -> int | None:
        is_set, price = self.contract.functions.tariffs(charger).call()
        return int(price) if is_set else None

    def escrow(self, driver: int) -> tuple[int, int]:
        addr = self.led.address_of(driver)
        return self._uint("freeOf", addr), self._uint("lockedOf", addr)

    @property
    def holdings(self) -> int:
        return int(self.led.token.functions.balanceOf(self.contract.address).call())

    def session(self, session_id: int) -> ChargingSession:
        not_negative(session_id, "charger tariffs: session", e.UnknownSession)
        if session_id >= self._uint("sessionCount"):
            raise e.UnknownSession(session_id)
        return self._session(session_id, self.contract.functions.session(session_id).call())

    def _session(self, session_id: int, s: Sequence[Any]) -> ChargingSession:
        charger, is_open, owner, driver, price, max_wh, metered, locked, amount = s
        return ChargingSession(
            session_id=session_id, charger=int(charger), owner=int(self.led.account_of(owner)),
            driver=int(self.led.account_of(driver)), price_per_mwh=int(price),
            max_wh=int(max_wh), locked=int(locked), open=bool(is_open),
            metered_wh=int(metered), amount=int(amount),
        )  # fmt: skip

    def open_session(self, charger: int) -> int | None:
        is_open, sid = self.contract.functions.openSession(charger).call()
        return int(sid) if is_open else None

    # --- transactions -----------------------------------------------------------------
    def set_tariff(self, charger: int, price_per_mwh: int, *, sender: int) -> None:
        self._send(
            "setTariff", [charger, price_per_mwh], sender=sender,
            purpose=f"charger {charger}: owner {sender} sets tariff {price_per_mwh}",
        )  # fmt: skip

    def deposit(self, driver: int, amount: int) -> None:
        not_negative(amount, "charger tariffs: deposit")
        self._approve(driver)
        self._send(
            "deposit", [amount], sender=driver,
            purpose=f"charger tariffs: driver {driver} deposits {amount}",
        )  # fmt: skip

    def withdraw(self, driver: int, amount: int) -> None:
        not_negative(amount, "charger tariffs: withdraw")
        self._send(
            "withdraw", [amount], sender=driver,
            purpose=f"charger tariffs: driver {driver} withdraws {amount}",
        )  # fmt: skip

    def start_session(self, charger: int, max_wh: int, *, driver: int,
                      max_price_per_mwh: int = 2**256 - 1) -> ChargingSession:
        logs = self._send(
            "startSession", [charger, max_wh, max_price_per_mwh], sender=driver,
            purpose=f"charger {charger}: driver {driver} starts a session (max {max_wh} Wh)",
        )  # fmt: skip
        (ev,) = self._events(logs, "SessionStarted")
        return ChargingSession(
            session_id=int(ev["sessionId"]), charger=int(ev["charger"]), owner=int(ev["owner"]),
            driver=int(ev["driver"]), price_per_mwh=int(ev["price"]), max_wh=int(ev["maxWh"]),
            locked=int(ev["locked"]), open=True, metered_wh=0, amount=0,
        )  # fmt: skip

    def end_session(
        self, session_id: int, metered_wh: int, *, sender: int = DSO_ACCOUNT
    ) -> ChargingSession:
        not_negative(session_id, "charger tariffs: end session", e.UnknownSession)
        self._send(
            "endSession", [session_id, metered_wh], sender=sender,
            purpose=f"charger tariffs: end session {session_id} at {metered_wh} Wh",
        )  # fmt: skip
        return self.session(session_id)
