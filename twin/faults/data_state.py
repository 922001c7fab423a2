"""The state of a run's meter-data path (``faults.data``) for ``twin run --resume``.

Two objects carry it: the head-end's :class:`~twin.faults.meter_data.MeterDataFaults` (its
random stream and the late or duplicated readings still on their way) and the operator's
:class:`~twin.market.provisional.MeterDesk` (the open estimates awaiting a true-up, the
readings already used, each device's last reading). A resume replays the run from its start
with the same seed, which rebuilds both; :class:`DataFaultsState` makes that checkable:

- every checkpoint records :meth:`DataFaultsState.digest` (``checkpoint.json``
  ``"data_faults"``), taken between two market steps like the rest of the checkpoint;
- on resume, the head-end compares the rebuilt state with it when the replay reaches the
  checkpoint's step (:meth:`expect` / :meth:`before_step`, before it delivers that step's
  readings), and the replaying chain ledger checks the desk's open estimates against the
  provisional settlements the chain itself holds (``ProvisionalSettled`` without
  ``TruedUp``) — a difference is a :class:`DataStateMismatch`, not a silent double or
  missing true-up.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twin.errors import TwinError

__all__ = ["DataFaultsState", "DataStateMismatch"]


class DataStateMismatch(TwinError):
    """The replay of a resumed run did not rebuild the checkpoint's meter-data state."""


class DataFaultsState:
    """The desk and the head-end of one run (module docstring)."""

    def __init__(self, desk: Any) -> None:
        self.desk = desk
        self.meters: Any = None  # the head-end's MeterDataFaults, set by its simulator
        self._expect: tuple[int, str, str] | None = None  # (step, digest, where)

    def state(self) -> dict[str, Any]:
        """Everything the data path carries from one market step to the next."""
        d = self.desk
        out: dict[str, Any] = {
            "open_estimates": sorted([k[0], k[1], int(v)] for k, v in d.open_estimates.items()),
            "used": sorted([int(i), int(dev)] for i, dev in d.used),
            "last_wh": sorted([int(k), int(v)] for k, v in d.last_wh.items()),
            "counters": [d.duplicates_dropped, d.late_unneeded],
        }
        if self.meters is not None:
            out["pending"] = sorted([int(step), sorted(list(map(int, r)) for r in rows)]
                                    for step, rows in self.meters._pending.items() if rows)
            out["rng"] = self.meters._rng.bit_generator.state
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.state(), sort_keys=True, default=str).encode()
                              ).hexdigest()

    def expect(self, step: int, digest: str, *, where: str) -> None:
        """On resume: the state before the head-end's step ``step`` must have ``digest``."""
        self._expect = (int(step), str(digest), where)

    def before_step(self, k: int) -> None:
        """Called by the head-end before it delivers step ``k``'s readings."""
        if self._expect is None or k < self._expect[0]:
            return
        step, want, where = self._expect
        self._expect = None
        if k == step and self.digest() != want:
            raise DataStateMismatch(
                f"{where}: the replay reached market step {step} with meter-data state (open "
                "estimates, pending late readings, the head-end's random stream) different from "
                "the checkpoint's; run the scenario again into a new folder")

    def check_open_estimates(self, on_chain: dict[tuple[int, int], int], *, step: int) -> None:
        """The desk's open estimates must be the chain's open provisional settlements."""
        mine = {(int(i), int(d)): int(v) for (i, d), v in self.desk.open_estimates.items()}
        theirs = {(int(i), int(d)): int(v) for (i, d), v in on_chain.items()}
        if mine != theirs:
            extra = sorted(set(mine.items()) ^ set(theirs.items()))[:5]
            raise DataStateMismatch(
                f"resume: at market step {step} the replayed meter desk holds {len(mine)} open "
                f"estimates, the chain {len(theirs)} open provisional settlements (first "
                f"differences (interval, device), estimate: {extra}); run the scenario again")
