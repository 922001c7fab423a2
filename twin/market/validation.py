"""Checks of order intents before they are sent: pure functions, every problem collected.

A malformed order (unknown device, a number outside its range in
:data:`twin.market.limits.ORDER_LIMITS`: energy outside 1..ENERGY_MAX_WH, price outside
1..PRICE_MAX, an interval that is negative or not below INTERVAL_LIMIT; or an interval already
closed) is rejected by both ledgers before anything is sent or changed, with every problem of
the batch in the message; the error raised is the one the contract would revert with for the
first problem (same class, same values), so a caller handles a pre-send rejection and an
on-chain revert alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.limits import first_failed
from twin.market.types import OrderIntent

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
    """Every stateless problem of a batch (at most one per intent, in the contract's order):
    an unknown device, then the first range limit that fails (:data:`ORDER_LIMITS`, checked
    for the whole batch at once), then a closed interval."""
    problems: list[OrderProblem] = []
    closed: dict[int, bool] = {}
    for k, (it, lim) in enumerate(zip(intents, first_failed(intents), strict=True)):
        err: e.MarketError | None = None
        d = it.device_id
        if not 0 <= d < _UINT64 or not is_registered(d):
            err = e.UnknownDevice(d)
        elif lim is not None:
            err = lim.error_for(device=d, interval=it.interval, value=getattr(it, lim.field))
        else:
            shut = closed.get(it.interval)
            if shut is None:
                shut = closed[it.interval] = is_closed(it.interval)
            if shut:
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
