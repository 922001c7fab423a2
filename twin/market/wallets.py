"""Wallets of settlement money (micro-units) for the pilot mechanisms' references.

On chain the pilot contracts (``GreenTokenExchange``, ``ChargerTariffs``) move the
settlement token between wallets (ERC-20 ``transferFrom``); their pure-Python references in
:mod:`twin.services.green_exchange.rules` and :mod:`twin.services.charger_tariffs.rules` move money through
an object with the same two operations, :class:`Money`. :class:`Wallets` is the plain one
(a dict, funded with :meth:`Wallets.mint`); a run may pass any other object with
``balance_of`` and ``transfer``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol, runtime_checkable

from twin.market import errors as e

__all__ = ["CONTRACT_WALLET", "Money", "Wallets"]

#: A service contract's own wallet in :class:`Money` transfers (holds its escrow).
CONTRACT_WALLET = -1


@runtime_checkable
class Money(Protocol):
    """Settlement money as the mechanisms see it (account indices, micro-units)."""

    def balance_of(self, account: int) -> int: ...
    def transfer(self, sender: int, to: int, amount: int) -> None: ...


class Wallets:
    """Wallet balances in a dict; :meth:`mint` is the operator's minting (tests, funding)."""

    def __init__(self) -> None:
        self._balance: dict[int, int] = defaultdict(int)
        self.minted = 0

    def mint(self, account: int, amount: int) -> None:
        if amount < 0:
            raise e.BadAmount(amount)
        self._balance[account] += amount
        self.minted += amount

    def balance_of(self, account: int) -> int:
        return self._balance.get(account, 0)

    def transfer(self, sender: int, to: int, amount: int) -> None:
        """Move ``amount`` (>= 0); the callers check balances first (their own errors)."""
        have = self._balance.get(sender, 0)
        if amount < 0 or have < amount:
            raise e.InsufficientBalance(sender, amount, have)
        self._balance[sender] = have - amount
        self._balance[to] += amount

    def total(self) -> int:
        return sum(self._balance.values())
