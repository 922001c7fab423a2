"""Audits over any :class:`~twin.market.ledger.Ledger`: token conservation, transaction log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["drain_tx_log", "token_audit"]


def token_audit(ledger: Any, *, accounts: Iterable[int], minted: int, value_holdings: int = 0,
                wallet_adjustments: Mapping[int, int] | None = None) -> dict[str, Any]:
    """Check that value was neither created nor destroyed.

    Three identities must hold exactly: the token's total supply equals what the run minted;
    it equals the wallets plus the market's holdings plus the value contracts' holdings
    (``value_holdings``: DR escrow, undistributed or unclaimed asset revenue); and the
    market's holdings equal the sum of all free, locked and bond balances it books.
    ``wallet_adjustments``: wallet changes the ledger does not book itself (the reference
    ledger has no wallet-to-wallet transfers; :class:`twin.market.services.MoneyRail`).
    """
    accounts = list(accounts)
    adjust = wallet_adjustments or {}
    supply = ledger.total_supply()
    holdings = ledger.market_holdings()
    many = hasattr(ledger, "wallets") and hasattr(ledger, "balances")  # a chain: batched reads
    held = ledger.wallets(accounts) if many else [ledger.wallet(a) for a in accounts]
    wallets = sum(w + adjust.get(a, 0) for a, w in zip(accounts, held, strict=True))
    balances = ledger.balances(accounts) if many else [ledger.balance(a) for a in accounts]
    booked = sum(b.free + b.locked + b.bond for b in balances)
    debt = sum(b.debt for b in balances)
    conserved = (supply == minted == wallets + holdings + value_holdings and holdings == booked
                 and not set(adjust) - set(accounts))
    return {"conserved": conserved, "total_supply": supply, "minted": minted,
            "wallets": wallets, "market_holdings": holdings, "value_holdings": value_holdings,
            "booked": booked, "debt": debt}


def drain_tx_log(ledger: Any, *, interval_s: int) -> list[dict[str, Any]]:
    """Transactions sent since the last call (the chain ledger keeps them; others have none).

    Each row gets ``time_s``: the start of its market interval, 0 for set-up transactions.
    """
    drain = getattr(ledger, "drain_tx_log", None)
    rows = list(drain()) if drain is not None else []
    for row in rows:
        k = row.get("interval")
        row["time_s"] = k * interval_s if k is not None else 0
    return rows
