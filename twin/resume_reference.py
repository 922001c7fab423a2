"""Resume for runs on the reference ledger, market services included (``twin run --resume``).

The reference ledger and the services' reference rules live in the run's process, so their
checkpoint is a *fingerprint* of their state written after each table flush (like the chain
checkpoint, into ``checkpoint.json``, ``"ledger": "reference"``): every account's free,
locked and debt balance and wallet, every interval's status, the ledger's counters, the
provisional settlements open, and the services' token holdings and wallet adjustments, taken
between two market steps. Resuming restores that state the way the chain resume restores
the agents and the grid: the scenario runs again from its start with the same seed, which
rebuilds the ledger and the services deterministically; when the replay reaches the
checkpoint's market step, :class:`ReferenceReplay` checks the rebuilt state against the
fingerprint (a different one raises :class:`ReplayMismatch`: the code or its inputs
changed) and the run continues. As with a chain run, no table is rewritten before the replay
has passed the point where the stopped run stopped.

Chain runs with market services resume the same way (``"ledger": "chain"``, ``"replay":
"fresh"``): the value-layer contracts' state and the services' Python state are rebuilt by
running the scenario again from its start on a *new* chain. Every account's key comes from
the seed and every transaction is signed by the twin, so the replay sends the same
transactions with the same nonces (a transaction of the stopped run can only ever be one of
these); at the checkpoint's market step the new chain must hold the same block number,
balances, wallets, supply and value-contract holdings (the fingerprint) as the stopped one.
The replayed part costs its chain time again (no ``anvil_dumpState`` is loaded, none is
written either: the checkpoint is the fingerprint alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import TwinError
from twin.results import write_json_atomic

__all__ = ["ReferenceCheckpointer", "ReferenceReplay", "ReferenceResumePoint", "ReplayMismatch",
           "fingerprint"]

CHECKPOINT = "checkpoint.json"


class ReplayMismatch(TwinError):
    """The replay of a resumed reference run did not rebuild the checkpoint's state."""


def fingerprint(ledger: Any, *, n_accounts: int, services: Any = None) -> str:
    """A digest of the reference ledger's (and the services') state (module docstring)."""
    led = getattr(ledger, "_ledger", ledger)  # under a wrapper: the ledger itself
    state: dict[str, Any] = {
        "balances": _balances(led, n_accounts),
        "status": sorted((int(k), str(v)) for k, v in getattr(led, "_status", {}).items()),
        "counters": [getattr(led, "_next_order", 0), getattr(led, "_next_trade", 0)],
        "provisional": sorted([list(k), v] for k, v in led.provisional().items())
        if hasattr(led, "provisional") else [],
        "supply": led.total_supply(),
    }
    w3 = getattr(led, "w3", None)
    if w3 is not None:  # a chain: the same number of transactions (one per block) too
        state["block"] = int(w3.eth.block_number)
    if services is not None:
        state["services"] = [services.value_holdings(),
                             sorted((services.wallet_adjustments() or {}).items())]
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _balances(led: Any, n_accounts: int) -> list[list[int]]:
    """[free, locked, debt, wallet] of accounts 0..n-1 (the reference ledger's straight from
    its accounts: a town checkpoint reads ~10,000 of them after every flush)."""
    from twin.market.reference import ReferenceLedger

    if type(led) is ReferenceLedger:
        from twin.market.reference_state import Account

        accs, zero = led._accounts, Account()
        return [[x.free, x.locked, x.debt, x.wallet]
                for x in (accs.get(a, zero) for a in range(n_accounts))]
    return [[b.free, b.locked, b.debt, led.wallet(a)]
            for a, b in ((a, led.balance(a)) for a in range(n_accounts))]


class ReferenceCheckpointer:
    """After each flush of a reference run: record the market steps done and the state's
    fingerprint in ``checkpoint.json`` (cheap: no dump; the replay rebuilds every table, so
    the flush need not be on disk first)."""

    needs_flushed_tables = False

    def __init__(self, *, ledger: Any, out_dir: Path, interval_s: int, run_id: str,
                 scenario_hash: str, n_accounts: int, services: Any = None,
                 kind: str = "reference") -> None:
        self._ledger, self._out, self._interval_s = ledger, Path(out_dir), interval_s
        self._kind = kind  # "reference", or "chain" (a chain run with services: fresh replay)
        self._ids = {"run_id": run_id, "scenario_hash": scenario_hash}
        self._n, self._services = n_accounts, services
        self._data_state: Any = None

    def bind_data_state(self, state: Any) -> None:
        """faults.data: each checkpoint records the meter-data state's digest too
        (twin/faults/data_state.py)."""
        self._data_state = state

    def __call__(self, *, force: bool = False) -> None:
        now_s = int(self._ledger.now_s)
        steps = now_s // self._interval_s + 1 if now_s >= 0 else 0
        doc = {"ledger": self._kind, "replay": "fresh", "market_steps": steps, "time_s": steps * self._interval_s,
               "fingerprint": fingerprint(self._ledger, n_accounts=self._n, services=self._services),
               "written_at": time.time(), **self._ids}
        if self._data_state is not None:
            doc["data_faults"] = self._data_state.digest()
        write_json_atomic(doc, self._out / CHECKPOINT)


class ReferenceReplay:
    """The reference ledger of a resumed run: checks the rebuilt state against the
    checkpoint's fingerprint when the replay reaches its market step (every attribute not
    defined here is the ledger's)."""

    def __init__(self, ledger: Any, *, point: ReferenceResumePoint, n_accounts: int) -> None:
        self._ledger = ledger
        self._point = point
        self._n = n_accounts
        self.services: Any = None  # set once the run has built them
        self.checked = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def bind_data_state(self, state: Any) -> None:
        """faults.data: the head-end checks the rebuilt meter-data state at the checkpoint's
        step (twin/faults/data_state.py)."""
        if self._point.data_faults is not None:
            state.expect(self._point.market_steps, self._point.data_faults,
                         where=str(self._point.out_dir))

    def drain_fault_log(self, **kw: Any) -> dict[str, list[dict[str, Any]]]:
        """A flaky chain's incident rows (a fresh chain replay): the ones of the replayed part
        before the point where the stopped run stopped are that run's, kept from its tables."""
        drain = getattr(self._ledger, "drain_fault_log", None)
        if drain is None:  # not a flaky chain
            return {}
        tables: dict[str, list[dict[str, Any]]] = drain(**kw)
        cut = self._point.stopped_at_time_s
        return {t: [r for r in rows if int(r["time_s"]) >= cut] for t, rows in tables.items()}

    def set_time(self, now_s: int) -> None:
        step = now_s // self._point.interval_s
        if not self.checked and step >= self._point.market_steps:
            got = fingerprint(self._ledger, n_accounts=self._n, services=self.services)
            if got != self._point.fingerprint:
                raise ReplayMismatch(
                    f"{self._point.out_dir}: the replay reached market step "
                    f"{self._point.market_steps} with a ledger state different from the "
                    "checkpoint's (the code or its inputs changed since the run stopped); "
                    "run the scenario again into a new folder")
            self.checked = True
        self._ledger.set_time(now_s)


@dataclass(frozen=True)
class ReferenceResumePoint:
    """Where a stopped reference run is continued from."""

    out_dir: Path
    market_steps: int
    fingerprint: str
    run_id: str = ""
    stopped_at_time_s: int = 0
    kind: str = "reference"  # or "chain_fresh": a chain run with services, on a new chain
    interval_s: int = 900
    data_faults: str | None = None  # faults.data: the meter-data state's digest at the checkpoint

    @contextlib.contextmanager
    def open_reference(self, ledger: Any, *, n_accounts: int
                       ) -> Iterator[tuple[ReferenceReplay, dict[str, Any]]]:
        yield ReferenceReplay(ledger, point=self, n_accounts=n_accounts), {
            "ledger": "reference", "resumed_from": {"market_steps": self.market_steps}}

    def wrap_chain(self, ledger: Any, info: dict[str, Any], *, n_accounts: int
                   ) -> tuple[ReferenceReplay, dict[str, Any]]:
        """A fresh chain's ledger (and its manifest entry) for a replayed chain run."""
        return ReferenceReplay(ledger, point=self, n_accounts=n_accounts), {
            **info, "resumed_from": {"market_steps": self.market_steps, "replay": "fresh"}}
