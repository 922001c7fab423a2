"""Split one interval's continuous double auction into bounded ``EnergyMarket.clearCda`` calls.

The contract (library ``CdaMatching``) takes the interval's order ids in ascending order, one
at a time; each taken order fills against the other side's resting list (one *step* per
fill) and its remainder rests at the position its insertion hint names (no step). Once all
orders are taken, every bid still resting gets its escrow released (one step each), and the
interval is cleared. A call carries at most ``chunk`` ids and a budget of ``chunk`` steps:
it pauses when a step is due and the budget is used up (possibly in the middle of one
order's fills; the next call resumes it), and every id it brought must have been taken by
then. :func:`plan_cda` replays :func:`twin.market.cda.continuous_double_auction`'s step
counts and cuts them so that each call ends exactly at such a pause, so gas per call is
bounded by ``chunk`` whatever the size of the book or of a single sweeping order.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.market.cda import CdaResult

__all__ = ["CDA_CHUNK", "CdaChunk", "plan_cda"]

#: Default bound of one ``clearCda`` call (ids taken and steps run), chosen so a call stays
#: below a 30 M block gas limit (tests/chain/test_mechanisms_chain.py measures it).
CDA_CHUNK = 200


@dataclass(frozen=True, slots=True)
class CdaChunk:
    """Arguments of one ``clearCda`` call."""

    ids: tuple[int, ...]
    hints: tuple[int, ...]
    max_steps: int
    at: int = 0  # cursor position it follows: orders taken + fills (CursorMismatch otherwise)


def plan_cda(result: CdaResult, *, chunk: int) -> list[CdaChunk]:
    """The ``clearCda`` calls that run ``result``'s book (see the module docstring)."""
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, got {chunk}")
    calls: list[CdaChunk] = []
    ids: list[int] = []
    hints: list[int] = []
    used = 0
    at = pos = 0  # orders taken + fills: where the open call starts, where it is

    def close() -> None:
        nonlocal used, at
        calls.append(CdaChunk(ids=tuple(ids), hints=tuple(hints), max_steps=chunk, at=at))
        ids.clear()
        hints.clear()
        used = 0
        at = pos

    for step in result.steps:
        if len(ids) == chunk:
            close()
        ids.append(step.order_id)
        hints.append(step.hint)
        pos += 1
        todo = step.fills
        while used + todo > chunk:  # pauses in the middle of this order's fills
            todo -= chunk - used
            pos += chunk - used
            close()
        used += todo
        pos += todo
    todo = len(result.resting_bids)
    while used + todo > chunk:
        todo -= chunk - used
        close()
    close()
    return calls
