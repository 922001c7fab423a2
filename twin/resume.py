"""Continue a run that stopped (``twin run --resume DIR``): Anvil killed, the process killed.

While a chain run goes on, a table flush (every few seconds of wall time) is followed by a
chain checkpoint (skipped while the last one is recent, so dumping costs at most ~10 % of the
wall time: :class:`ChainCheckpointer`): the node's whole state (``anvil_dumpState``) goes to
``DIR/chain_checkpoint_{a,b}.json.gz`` (no call traces, gzipped; two slots, used in turn; the older one is deleted once
the new one is named, so one copy stays at rest), then ``DIR/checkpoint.json``
names that file, its block and ``market_steps`` (steps ``0 .. market_steps - 1`` are done:
each interval up to ``market_steps - 1`` settled and the next one cleared). A kill at any
moment leaves ``checkpoint.json`` naming a complete dump. The flush happens in the agents'
step ``k``, after the market's step ``k - 1`` and before its step ``k``, so a checkpoint
always falls between two market steps.

Resuming loads that chain state into a new Anvil (same contracts, balances, orders, trades,
logs and block numbers) and runs the scenario again from its start, deterministically (same
seed): for the market steps the checkpoint holds, :class:`ReplayLedger` sends nothing and
answers from the chain's logs (the orders, clearings, curtailed trades and settlements that
happened), checking that the replayed agents asked for exactly what is on chain; from the
first step after the checkpoint on it is the live chain ledger. The agents and the grid thus
reach the checkpoint in the same state, every table is rebuilt (the rows up to the last
settled interval are the ones of the stopped run; the transaction table keeps the stopped
run's rows up to the checkpoint's block), and no trade is lost or doubled: an order, trade or
settlement sent after the checkpoint is not in the loaded chain and is sent again, once.

Reference-ledger runs (market services included) resume by the same deterministic replay,
checked against a fingerprint of the ledger's state (:mod:`twin.resume_reference`). So do
chain runs with market services: their value-layer contracts and the services' own state are
rebuilt by replaying the run on a new chain from its start (same keys, same transactions),
checked against the fingerprint at the checkpoint's step (:mod:`twin.resume_reference`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import TwinError
from twin.lifecycle import effective_status
from twin.market.errors import NotCleared
from twin.market.types import Clearing, Device, Order, OrderIntent, SettlementRow, Trade
from twin.results import read_parquet, write_json_atomic
from twin.resume_archive import TableArchive

__all__ = [
    "CHAIN_CHECKPOINT",
    "CHECKPOINT",
    "ChainCheckpointer",
    "ReplayLedger",
    "ResumeError",
    "ResumePoint",
    "load_resume_point",
    "write_checkpoint",
]

CHECKPOINT = "checkpoint.json"
CHAIN_CHECKPOINT = ("chain_checkpoint_a.json.gz", "chain_checkpoint_b.json.gz")


class ResumeError(TwinError):
    """The folder cannot be resumed, or the replay did not reproduce what is on chain."""


class ChainCheckpointer:
    """Calls :func:`write_checkpoint` after a flush unless the last dump was recent: the
    time since it must be at least ``10 x`` what it took, so dumping a large chain costs at
    most about a tenth of the run's wall time. ``force`` (a flush due by market intervals,
    ``--checkpoint-every-intervals``) dumps unless the time since the last dump is under
    ``4 x`` what it took: a dump's cost grows with the chain, and forced dumps at a fixed
    pace made each simulated day cost more than the one before (at most a fifth of the wall
    time goes to forced dumps; while dumps are cheap, every forced one happens)."""

    FORCED_GAP_X = 4.0
    GAP_X = 10.0

    def __init__(self, *, ledger: Any, out_dir: Path, interval_s: int, run_id: str,
                 scenario_hash: str) -> None:
        self._args = {"ledger": ledger, "out_dir": out_dir, "interval_s": interval_s,
                      "run_id": run_id, "scenario_hash": scenario_hash}
        self._last_end = -float("inf")
        self._took = 0.0

    def bind_data_state(self, state: Any) -> None:
        """faults.data: each checkpoint records the meter-data state's digest too."""
        self._args["data_state"] = state

    def __call__(self, *, force: bool = False) -> None:
        gap = time.monotonic() - self._last_end
        if gap < (self.FORCED_GAP_X if force else self.GAP_X) * self._took:
            return
        t0 = time.monotonic()
        write_checkpoint(**self._args)
        self._last_end = time.monotonic()
        self._took = self._last_end - t0


def write_checkpoint(*, ledger: Any, out_dir: Path, interval_s: int, run_id: str,
                     scenario_hash: str, data_state: Any = None) -> None:
    """Dump the chain state, then record the checkpoint (call it right after a flush); the
    checkpoint names the run (``run_id``, ``scenario_hash``) so a resume refuses a foreign one.

    The market's clock stands at the last step it ran (``set_time``), so the steps done are
    ``now_s // interval_s + 1`` (none before the first step)."""
    now_s = int(ledger.now_s)
    steps = now_s // interval_s + 1 if now_s >= 0 else 0
    try:
        last = json.loads((out_dir / CHECKPOINT).read_text())["state_file"]
    except (OSError, ValueError, KeyError):
        last = CHAIN_CHECKPOINT[1]
    state_file = CHAIN_CHECKPOINT[0] if last == CHAIN_CHECKPOINT[1] else CHAIN_CHECKPOINT[1]
    block = ledger.checkpoint_state(out_dir / state_file)
    doc = {"market_steps": steps, "block": block, "time_s": steps * interval_s,
           "state_file": state_file, "run_id": run_id, "scenario_hash": scenario_hash}  # fmt: skip
    if data_state is not None:  # faults.data: open estimates, late readings, the head-end's stream
        doc["data_faults"] = data_state.digest()
    write_json_atomic(doc, out_dir / CHECKPOINT)
    # the older slot is no longer named by any checkpoint: one chain state on disk at rest
    (out_dir / (CHAIN_CHECKPOINT[1] if state_file == CHAIN_CHECKPOINT[0] else CHAIN_CHECKPOINT[0])
     ).unlink(missing_ok=True)


@dataclass(frozen=True)
class ResumePoint:
    """Where a stopped run is continued from (see the module docstring)."""

    out_dir: Path
    market_steps: int
    block: int
    state_file: str
    contracts: dict[str, str]
    chain_rows: list[dict[str, Any]]  # the stopped run's transactions up to ``block``
    run_id: str = ""
    stopped_at_time_s: int = 0  # the stopped run's tables reach this far: kept until passed
    data_faults: str | None = None  # faults.data: the meter-data state's digest at the checkpoint
    #: the stopped run's market tables: the record of intervals whose logs the node dropped
    archive: Any = None

    @contextlib.contextmanager
    def open_ledger(
        self, *, n_accounts: int, interval_s: int, seed: int | str = 0, via: Any = None
    ) -> Iterator[tuple[ReplayLedger, dict[str, Any]]]:
        """A new Anvil on the checkpointed state and the replaying ledger over it (the hook
        ``twin.run`` opens instead of a new chain)."""
        from twin.chain.anvil import AnvilNode
        from twin.chain.keys import derive_keys
        from twin.chain.ledger import ChainLedger

        state_file = self.out_dir / "chain_state.json.gz"
        with AnvilNode(
            accounts=1, load_state=self.out_dir / self.state_file, dump_state=state_file,
            automine=False,  # mines on demand, as the run it continues (twin.run_ledger)
        ) as node:
            # ``via(node)``: a context giving the web3 to talk through (the faults.chain proxy)
            w3_ctx = via(node) if via is not None else contextlib.nullcontext(node.web3())
            stack = contextlib.ExitStack()
            w3 = stack.enter_context(w3_ctx)
            chain = ChainLedger(w3, addresses=self.contracts,
                                keys=derive_keys(seed, n_accounts), operator_is_agent=False)
            chain.tx.log_window_blocks = node.keep_tx_blocks  # as twin.run_ledger
            chain.prune_settled = True  # as twin.run_ledger
            chain.compact_node = node.compact  # behind the fault proxy too: same URL
            if chain.w3.eth.block_number != self.block:
                raise ResumeError(
                    f"{self.out_dir / self.state_file} holds block {chain.w3.eth.block_number}, "
                    f"{CHECKPOINT} says {self.block}"
                )
            info = {
                "ledger": "chain", "chain_id": chain.chain_id, "contracts": chain.addresses(),
                "rpc_url": None, "state_file": state_file.name,
                "resumed_from": {"market_steps": self.market_steps, "block": self.block},
            }  # fmt: skip
            with stack:
                yield ReplayLedger(
                    chain, replay_steps=self.market_steps, interval_s=interval_s,
                    chain_rows=self.chain_rows, data_faults=self.data_faults,
                    where=str(self.out_dir), archive=self.archive,
                ), info  # fmt: skip


def load_resume_point(out_dir: Path) -> tuple[dict[str, Any], ResumePoint]:
    """The stopped run's scenario (as in its manifest) and where to continue it."""
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{out_dir}: no readable manifest.json to resume ({exc})") from exc
    status = effective_status(manifest)
    if status == "complete":
        raise ResumeError(f"{out_dir}: the run is complete; nothing to resume")
    if status == "running":
        proc = manifest.get("process") or {}
        raise ResumeError(f"{out_dir}: the run is still going (pid {proc.get('pid', '?')} on "
                          f"{proc.get('host', '?')}); stop it first")
    chain = manifest.get("chain") or {}
    if chain.get("ledger") not in ("chain", "reference"):
        raise ResumeError(
            f"{out_dir}: only chain and reference-ledger runs can be resumed (this one used the "
            f"{chain.get('ledger', 'unknown')} ledger); run it again instead"
        )
    try:
        point = json.loads((out_dir / CHECKPOINT).read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(
            f"{out_dir}: no checkpoint ({CHECKPOINT}); the run stopped before its first "
            "checkpoint — run it again"
        ) from exc
    mine = (manifest.get("run_id"), manifest.get("scenario_hash"))
    theirs = (point.get("run_id"), point.get("scenario_hash"))
    if mine != theirs:
        raise ResumeError(
            f"{out_dir}: {CHECKPOINT} belongs to another run (run id {theirs[0]}, scenario hash "
            f"{str(theirs[1])[:12]}) than manifest.json (run id {mine[0]}, scenario hash "
            f"{str(mine[1])[:12]}); nothing was changed — run the scenario again into a new folder")
    if chain.get("ledger") == "reference" or point.get("replay") == "fresh":
        from twin.resume_reference import ReferenceResumePoint  # twin/resume_reference.py

        return manifest["scenario"], ReferenceResumePoint(  # type: ignore[return-value]
            out_dir=out_dir, market_steps=int(point["market_steps"]),
            fingerprint=str(point["fingerprint"]), run_id=str(manifest["run_id"]),
            stopped_at_time_s=int(manifest.get("stopped_at_time_s") or 0),
            kind="reference" if chain.get("ledger") == "reference" else "chain_fresh",
            interval_s=int(manifest.get("interval_s") or 900), data_faults=point.get("data_faults"))
    if not (out_dir / str(point.get("state_file"))).is_file():
        raise ResumeError(f"{out_dir}: the chain state {point.get('state_file')} is missing")
    rows: list[dict[str, Any]] = []
    if (out_dir / "chain.parquet").is_file():
        try:
            table = read_parquet(out_dir / "chain.parquet")
        except ValueError as exc:
            raise ResumeError(f"{exc}; the run cannot be resumed: run it again") from exc
        rows = [r for r in table.to_pylist() if r["block"] <= point["block"]]  # fmt: skip
    return manifest["scenario"], ResumePoint(
        out_dir=out_dir, market_steps=int(point["market_steps"]), block=int(point["block"]),
        state_file=str(point["state_file"]), contracts=dict(chain["contracts"]), chain_rows=rows,
        run_id=str(manifest["run_id"]), stopped_at_time_s=int(manifest.get("stopped_at_time_s") or 0),
        data_faults=point.get("data_faults"),
        archive=TableArchive.read(out_dir, last=int(point["market_steps"])),
    )  # fmt: skip


class ReplayLedger:
    """The chain ledger, replaying the market steps a checkpoint holds (module docstring).

    Every attribute not defined here is the chain ledger's."""

    def __init__(
        self, chain: Any, *, replay_steps: int, interval_s: int, chain_rows: list[dict[str, Any]],
        data_faults: str | None = None, where: str = "resume", archive: Any = None,
    ) -> None:
        self.chain = chain
        #: TableArchive (twin/resume_archive.py): the answers for intervals whose logs are gone
        self._archive = archive
        self._data_faults = data_faults
        self._where = where
        self._data_state: Any = None
        self.replay_steps = replay_steps
        self._interval_s = interval_s
        self._step = -1
        self._old_rows: list[dict[str, Any]] | None = [
            {k: v for k, v in r.items() if k != "time_s"} for r in chain_rows
        ]
        self._cleared: dict[int, dict[int, Trade]] = {}
        self._last_settled: int | None = None  # the last interval settled in the replay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chain, name)

    @property
    def replaying(self) -> bool:
        return self._step < self.replay_steps

    def set_time(self, now_s: int) -> None:
        was = self.replaying
        self._step = now_s // self._interval_s
        if was and not self.replaying and self._data_state is not None:
            # faults.data: the replayed desk's open estimates are the chain's open ones
            self._data_state.check_open_estimates(
                self.chain.provisional(also=self._data_state.desk.open_estimates.keys()),
                step=self._step)
        if was and not self.replaying:
            self._prune_last_settled()
        if not self.replaying:
            self.chain.set_time(now_s)

    def _prune_last_settled(self) -> None:
        """The stopped run pruned each settled interval at the next settlement: the one it
        settled last before the checkpoint is pruned at the first live settlement here."""
        k, self._last_settled = self._last_settled, None
        if k is None or not getattr(self.chain, "prune_settled", False):
            return
        from twin.chain.ledger_base import INTERVAL_STATE

        state = self.chain._view(self.chain.market, "intervals", [k], INTERVAL_STATE)
        head = self.chain._rpc("eth_getBlockByNumber", ["latest", False])["result"]
        self.chain._unpruned.append((k, int(state[5]), int(state[6]), int(state[3]) + int(state[4]),
                                     (int(head["number"], 16), str(head["hash"]))))

    def bind_data_state(self, state: Any) -> None:
        """faults.data (twin/faults/data_state.py): the head-end checks the rebuilt state at
        the checkpoint's step; this ledger checks the open estimates against the chain."""
        self._data_state = state
        if self._data_faults is not None:
            state.expect(self.replay_steps, self._data_faults, where=self._where)
        elif self.replay_steps > 0:
            raise ResumeError(f"{self._where}: the checkpoint has no meter-data state (written "
                              "by an older version); run the scenario again into a new folder")

    def drain_tx_log(self) -> list[dict[str, Any]]:
        """The stopped run's transactions first (once), then the new ones."""
        old, self._old_rows = self._old_rows or [], None
        return old + list(self.chain.drain_tx_log())

    # --- set-up: on chain already ----------------------------------------------------------
    def deposit(self, account: int, amount: int) -> None:
        if not self.replaying:
            self.chain.deposit(account, amount)

    def register_device(self, device: Device, *, sender: int | None = None) -> None:
        if not self.replaying:
            self.chain.register_device(device, sender=sender)
        elif self.chain.device(device.device_id) != device:
            raise ResumeError(f"replay: device {device.device_id} differs from the one on chain")

    def deposit_many(self, funding: Mapping[int, int]) -> None:
        """The batched set-up (twin/chain/ledger_setup.py): on chain already while replaying;
        the accounts count as prepared (their ``approve`` is on chain too)."""
        if not self.replaying:
            self.chain.deposit_many(funding)
            return
        prepared = getattr(self.chain, "_prepared", None)
        if prepared is not None:
            prepared.update(funding)

    def register_devices(self, devices: Sequence[Device], *, sender: int | None = None) -> None:
        if not self.replaying:
            self.chain.register_devices(devices, sender=sender)
            return
        for device in devices:
            self.register_device(device, sender=sender)

    def set_device_signers(self, signers: Mapping[int, str], **kw: Any) -> None:
        if not self.replaying:
            self.chain.set_device_signers(signers, **kw)
            return
        for device_id, signer in signers.items():
            self.set_device_signer(device_id, signer, **kw)

    def set_device_signer(self, device_id: int, signer: str, **kw: Any) -> None:
        if not self.replaying:
            self.chain.set_device_signer(device_id, signer, **kw)
        elif self.chain.device_signer(device_id) != signer:
            raise ResumeError(f"replay: device {device_id}'s key differs from the one on chain")

    # --- market steps ------------------------------------------------------------------------
    def set_envelopes(self, interval: int, **kw: Any) -> None:
        if not self.replaying:  # replayed: the chain holds them already
            self.chain.set_envelopes(interval, **kw)

    def place_signed_orders(self, signed: Sequence[Any], **kw: Any) -> list[Order]:
        if not self.replaying:
            return list(self.chain.place_signed_orders(signed, **kw))
        return self.place_orders([so.intent for so in signed])

    def settle_signed(self, interval: int, readings: Sequence[Any], **kw: Any) -> list[SettlementRow]:
        if not self.replaying:
            return list(self.chain.settle_signed(interval, readings, **kw))
        return self.settle(interval, {r.device_id: r.metered_wh for r in readings},
                           estimated_wh=kw.get("estimated_wh"))

    def place_orders(self, intents: Sequence[OrderIntent], **kw: Any) -> list[Order]:
        if not self.replaying:
            return list(self.chain.place_orders(intents, **kw))
        intervals = {it.interval for it in intents}
        booked = [o for i in sorted(intervals) for o in self.chain.orders(i)]
        if len(booked) < len(intents) and self._archive is not None:  # logs gone: the tables
            booked = [o for i in sorted(intervals) for o in self._archive.orders(i)]
        asked = sorted((it.device_id, it.interval, int(it.side), it.energy_wh, it.price_per_mwh)
                       for it in intents)  # fmt: skip
        got = sorted((o.device_id, o.interval, int(o.side), o.energy_wh, o.price_per_mwh)
                     for o in booked)  # fmt: skip
        if asked != got:
            raise ResumeError(
                f"replay diverged at market step {self._step}: the agents asked for "
                f"{len(asked)} orders, the chain holds {len(got)} different ones"
            )
        return booked

    def clear(self, interval: int, **kw: Any) -> Clearing:
        if not self.replaying:
            return self.chain.clear(interval, **kw)  # type: ignore[no-any-return]
        try:
            clearing: Clearing = self.chain.clearing(interval)
        except NotCleared:  # the node dropped its logs: the stopped run's tables hold it
            archived = self._archive.clearing(interval) if self._archive is not None else None
            if archived is None:
                raise
            clearing = archived
        return clearing

    def curtail(self, trade_id: int, energy_wh: int, **kw: Any) -> Trade:
        if not self.replaying:
            return self.chain.curtail(trade_id, energy_wh, **kw)  # type: ignore[no-any-return]
        interval = self._step
        if interval not in self._cleared:
            trades = self.chain.trades(interval)
            if not trades and self._archive is not None:  # logs gone: the tables
                trades = self._archive.trades(interval)
            self._cleared[interval] = {t.trade_id: t for t in trades}
        trade = self._cleared[interval].get(trade_id)
        if trade is None or trade.energy_wh != energy_wh:
            raise ResumeError(
                f"replay diverged at market step {self._step}: curtailment of trade {trade_id} "
                f"to {energy_wh} Wh is not what the chain holds"
            )
        return trade

    def curtail_batch(self, curtailments: Sequence[tuple[int, int]], **kw: Any) -> list[Trade]:
        if not self.replaying:
            return self.chain.curtail_batch(curtailments, **kw)  # type: ignore[no-any-return]
        return [self.curtail(t, wh) for t, wh in curtailments]

    def settle(self, interval: int, metered_wh: Mapping[int, int], **kw: Any) -> list[SettlementRow]:
        if not self.replaying:
            return list(self.chain.settle(interval, metered_wh, **kw))
        rows: list[SettlementRow] = self.chain.settlement_rows(interval)
        from_logs = bool(rows)
        if not rows and self._archive is not None:  # logs gone: the stopped run's tables
            rows = self._archive.settlement_rows(interval)
        self._last_settled = interval
        estimated = dict(kw.get("estimated_wh") or {})
        if {r.device_id: r.metered_wh for r in rows} != {**metered_wh, **estimated}:
            raise ResumeError(
                f"replay diverged at market step {self._step}: the meter readings of interval "
                f"{interval} differ from the ones settled on chain"
            )
        if estimated and from_logs:  # faults.data: the estimates are the chain's provisional settlements
            on_chain = {v["device"]: v["estimatedWh"]
                        for _, v in self.chain._logs(["ProvisionalSettled"], topic1=interval)}
            if on_chain != estimated:
                raise ResumeError(
                    f"replay diverged at market step {self._step}: interval {interval} was "
                    f"settled on {len(on_chain)} estimates on chain, the replay made {len(estimated)}")
        return rows

    # --- faults.data: true-ups of provisional settlements --------------------------------------
    def true_up_signed(self, reading: Any, **kw: Any) -> Any:
        if not self.replaying:
            return self.chain.true_up_signed(reading, **kw)
        return self._trued_up(reading.interval, reading.device_id, reading.metered_wh)

    def true_up(self, interval: int, device_id: int, metered_wh: int, **kw: Any) -> Any:
        if not self.replaying:
            return self.chain.true_up(interval, device_id, metered_wh, **kw)
        return self._trued_up(interval, device_id, metered_wh)

    def _trued_up(self, interval: int, device_id: int, metered_wh: int) -> Any:
        """A replayed true-up: the one the chain holds (``TruedUp``), never sent again."""
        from twin.market.provisional import TrueUp

        for _, v in self.chain._logs(["TruedUp"], topic1=interval, topic2=device_id):
            if v["meteredWh"] != metered_wh:
                break
            return TrueUp(interval=v["interval"], device_id=v["device"], owner=v["owner"],
                          estimated_wh=v["estimatedWh"], metered_wh=v["meteredWh"],
                          delta_wh=v["meteredWh"] - v["estimatedWh"], amount=v["amount"],
                          paid=v["paid"], debt=v["debt"])
        raise ResumeError(
            f"replay diverged at market step {self._step}: the true-up of device {device_id} in "
            f"interval {interval} with {metered_wh} Wh is not what the chain holds")

    def set_books(self, interval: int, books: Mapping[int, int], **kw: Any) -> None:
        if not self.replaying:  # replayed: the chain's clearing holds the island books' trades
            self.chain.set_books(interval, books, **kw)
