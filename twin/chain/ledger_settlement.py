"""Settlement on chain: meter readings (plain or device-signed), in one transaction or
bounded chunks after a dry run, resumable; settlement rows from the logs; a layer of
:class:`~twin.chain.ledger.ChainLedger`."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any, cast

from twin.chain.chunks import plan_settlement
from twin.chain.ledger_base import INTERVAL_STATE, STATUS, UINT64
from twin.chain.ledger_clearing import ClearingLedger
from twin.market import errors as e
from twin.market.signing import SignedReading
from twin.market.types import OPERATOR_ACCOUNT, SettlementRow

__all__ = ["SettlingLedger"]


class SettlingLedger(ClearingLedger):
    """Settlement (see :class:`~twin.chain.ledger.ChainLedger`)."""

    # --- settlement -------------------------------------------------------------------
    def settle(
        self,
        interval: int,
        metered_wh: Mapping[int, int],
        *,
        sender: int | None = None,
        chunk_trades: int | None = None,
        chunk_devices: int | None = None,
    ) -> list[SettlementRow]:
        """Settle on meter readings: one ``settle`` transaction when the interval has at most
        ``chunk_trades`` trades and ``chunk_devices`` readings (defaults: the ledger's
        ``settle_chunk_trades`` / ``settle_chunk_devices``), else bounded ``settleChunk``
        transactions (:func:`twin.chain.chunks.plan_settlement`) after a dry run of the
        whole settlement's checks (``checkSettlement``).

        An interval left "settling" by an interrupted chunk sequence is resumed from the
        contract's cursor (pass the same readings: those already settled are skipped); the
        rows returned are those of every chunk."""
        devices = sorted(metered_wh)
        for d in devices:
            if not 0 <= d < UINT64:
                raise e.UnknownDevice(d, purpose=f"settle: interval {interval}")
        return self._settle_chunked(
            interval, devices, [metered_wh[d] for d in devices], None, sender=sender,
            chunk_trades=chunk_trades, chunk_devices=chunk_devices,
        )  # fmt: skip

    def _settle_chunked(
        self,
        interval: int,
        devices: list[int],
        metered: list[int],
        sigs: list[tuple[bytes, bytes, int]] | None,
        *,
        sender: int | None,
        chunk_trades: int | None,
        chunk_devices: int | None,
    ) -> list[SettlementRow]:
        signed = sigs is not None
        what = "settle_signed" if signed else "settle"
        kind = "signed readings" if signed else "meter readings"
        who = OPERATOR_ACCOUNT if sender is None else sender
        per_trades = chunk_trades or self.settle_chunk_trades
        per_devices = chunk_devices or self.settle_chunk_devices
        state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
        n_trades = int(state[6])
        resume = STATUS[state[0]] == "settling"  # an interrupted chunk sequence
        if not resume and n_trades <= per_trades and len(devices) <= per_devices:
            args: list[Any] = [interval, devices, metered] + ([sigs] if signed else [])
            events = self._transact(
                self.market, "settleSigned" if signed else "settle", args,
                sender=who, interval=interval,
                purpose=f"{what}: interval {interval} ({len(devices)} {kind})",
            )  # fmt: skip
        else:
            purpose = f"{what}: interval {interval} ({len(devices)} {kind}, {n_trades} trades)"
            # the whole plan must be able to complete, else nothing is sent
            self.tx.dry_run(self.market, "checkSettlement",
                            [interval, devices, metered, sigs or [], signed],
                            sender=who, purpose=purpose)
            paid = start = 0
            if resume:  # continue from the cursor: readings up to its last device are settled
                paid, n_read, last = self._view(
                    self.market, "settlementProgress", [interval], ("uint256",) * 3
                )
                start = bisect.bisect_right(devices, last) if n_read else 0
            plan = plan_settlement(
                n_trades=n_trades - paid, n_readings=len(devices) - start,
                chunk_trades=per_trades, chunk_devices=per_devices,
            )  # fmt: skip
            pending = []
            for k, c in enumerate(plan):
                cut = slice(start + c.start, start + c.stop)
                part: list[Any] = [interval, c.max_trades, devices[cut], metered[cut]]
                if sigs is not None:
                    part.append(sigs[cut])
                pending.append(
                    self._send(
                        self.market, "settleSignedChunk" if signed else "settleChunk",
                        [*part, c.last], sender=who, interval=interval,
                        purpose=(
                            f"{what}: interval {interval} chunk {k + 1}/{len(plan)} "
                            f"({c.max_trades} trades, {c.stop - c.start} {kind})"
                        ),
                    )
                )  # fmt: skip  # all sent first, confirmed in order
            events = []
            for p in pending:
                events += self._finish(p)
            if resume:  # the rows of every chunk, the earlier ones included
                events = self._logs(["Settled"], topic1=interval)
        self._cleared_trades.pop(interval, None)
        return self._settlement_rows(events)

    @staticmethod
    def _settlement_rows(events: Sequence[tuple[str, dict[str, Any]]]) -> list[SettlementRow]:
        return [
            SettlementRow(
                interval=v["interval"],
                device_id=v["device"],
                owner=cast(int, v["owner"]),
                traded_wh=v["tradedWh"],
                metered_wh=v["meteredWh"],
                imbalance_wh=v["imbalanceWh"],
                trade_amount=v["tradeAmount"],
                imbalance_amount=v["imbalanceAmount"],
                debt=v["debt"],
            )
            for name, v in events
            if name == "Settled"
        ]

    def settle_signed(
        self,
        interval: int,
        readings: Sequence[SignedReading],
        *,
        sender: int | None = None,
        chunk_trades: int | None = None,
        chunk_devices: int | None = None,
    ) -> list[SettlementRow]:
        """``settleSigned`` (or bounded ``settleSignedChunk`` calls, as in :meth:`settle`):
        settle on meter readings each signed by its device's key."""
        by_device = sorted(readings, key=lambda r: r.device_id)
        for r in by_device:
            if not 0 <= r.device_id < UINT64:
                raise e.UnknownDevice(r.device_id, purpose=f"settle_signed: interval {interval}")
            if len(r.signature) != 65:
                raise e.BadSignature(r.device_id, purpose=f"settle_signed: interval {interval}")
        return self._settle_chunked(
            interval,
            [r.device_id for r in by_device],
            [r.metered_wh for r in by_device],
            [(r.signature[:32], r.signature[32:64], r.signature[64]) for r in by_device],
            sender=sender, chunk_trades=chunk_trades, chunk_devices=chunk_devices,
        )  # fmt: skip

    def settlement_rows(self, interval: int) -> list[SettlementRow]:
        """An interval's settlement rows (device id order), from the logs."""
        return self._settlement_rows(self._logs(["Settled"], topic1=interval))
