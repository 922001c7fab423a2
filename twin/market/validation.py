"""Checks of order intents before they are sent: pure functions, every problem collected.

A malformed order (unknown device, energy outside 1..ENERGY_MAX_WH, price outside
1..PRICE_MAX, an interval that is negative, not below INTERVAL_LIMIT or already closed) is rejected by both ledgers before anything is
sent or changed, with every problem of the batch in the message; the error raised is the one
the contract would revert with for the first problem (same class, same values), so a caller
handles a pre-send rejection and an on-chain revert alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.types import OrderIntent
from twin.market.units import ENERGY_MAX_WH, INTERVAL_LIMIT, PRICE_MAX

__all__ = ["OrderProblem", "check_intents", "reject_malformed"]

_UINT64 = 2**64


@dataclass(frozen=True, slots=True)
class OrderProblem:
    """One malformed intent: its position in the batch and the error it would revert with."""

    index: int
    error: e.MarketError

    def __str__(self) -> str:
        return f"order {self.index}: {self.error.signature()}: {self.error.explanation}"


def check_intents(
    intents: Sequence[OrderIntent],
    *,
    is_registered: Callable[[int], bool],
    is_closed: Callable[[int], bool],
) -> list[OrderProblem]:
    """Every stateless problem of a batch (at most one per intent, in the contract's order)."""
    problems: list[OrderProblem] = []
    for k, it in enumerate(intents):
        err: e.MarketError | None = None
        if not 0 <= it.device_id < _UINT64 or not is_registered(it.device_id):
            err = e.UnknownDevice(it.device_id)
        elif not 0 < it.energy_wh <= ENERGY_MAX_WH:
            err = e.BadEnergy(it.device_id, it.energy_wh)
        elif not 0 < it.price_per_mwh <= PRICE_MAX:
            err = e.BadPrice(it.device_id, it.price_per_mwh)
        elif not 0 <= it.interval < INTERVAL_LIMIT or is_closed(it.interval):
            err = e.IntervalClosed(it.interval)
        if err is not None:
            problems.append(OrderProblem(index=k, error=err))
    return problems


def reject_malformed(
    intents: Sequence[OrderIntent],
    *,
    is_registered: Callable[[int], bool],
    is_closed: Callable[[int], bool],
    action: str = "place_orders",
) -> None:
    """Raise the first problem's error (purpose lists them all) if any intent is malformed."""
    problems = check_intents(intents, is_registered=is_registered, is_closed=is_closed)
    if not problems:
        return
    first = problems[0]
    it = intents[first.index]
    listed = "; ".join(str(p) for p in problems[:5])
    more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
    first.error.purpose = (
        f"{action}: order for device {it.device_id} interval {it.interval} "
        f"({len(problems)} malformed of {len(intents)}: {listed}{more})"
    )
    first.error.pre_send = True
    first.error.args = (str(first.error),)
    raise first.error
