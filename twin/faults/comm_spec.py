"""Scenario spec of the data and communication faults (``faults.data``, ``faults.chain``).

``faults.data`` describes what happens to each device's meter reading of an interval on
its way to the market (the head-end system polls every meter after the interval ends):

- each poll attempt fails with ``poll_failure_rate`` (a transient communication error);
  the poller retries ``polling.retries`` times, ``polling.retry_interval_s`` apart, and gives
  up at ``polling.deadline_s`` after the interval's end (the settlement deadline);
- with ``loss_rate`` the reading is lost at the head-end: no attempt gets it before the
  deadline; the meter keeps it and it is backfilled ``backfill_delay_s`` later (None: never);
- with ``delay_rate`` the reading arrives ``delay_s`` late (after the deadline when
  ``delay_s > polling.deadline_s``);
- with ``duplicate_rate`` the reading is delivered twice (the second copy in the next
  interval);
- ``bursts``: windows in which every reading of the listed devices (all if none listed) is
  lost and backfilled after the window.

A reading missing at the deadline is estimated (``estimate``: the device's traded schedule,
i.e. its own forecast when it bid, or its last acquired reading), settled provisionally and
trued up when the real reading arrives.

``faults.chain`` describes a flaky node: outage windows of the JSON-RPC endpoint, dropped and
delayed transactions, node restarts (the node stops, reloads its dumped state, and comes
back), gas-price spikes, and the deadline after which the run gives up an outage
(:mod:`twin.faults.rpc_proxy`), all in simulated time (:mod:`twin.faults.chain_faults`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from twin.spec_base import NonNegFloat, Share, SpecModel

__all__ = [
    "BurstSpec",
    "ChainFaultsSpec",
    "DataFaultsSpec",
    "GasSpikeSpec",
    "OutageWindowSpec",
    "PollingSpec",
    "comm_problems",
]

_NonNegInt = Annotated[int, Field(ge=0)]


class PollingSpec(SpecModel):
    """How the head-end polls a meter after the interval ends."""

    retries: Annotated[int, Field(ge=0, le=100)] = 3
    retry_interval_s: Annotated[int, Field(gt=0)] = 30
    #: seconds after the interval's end by which readings must be in for settlement
    deadline_s: Annotated[int, Field(gt=0)] = 300


class BurstSpec(SpecModel):
    """A window (seconds from the scenario start) in which readings are lost."""

    start_s: _NonNegInt
    duration_s: Annotated[int, Field(gt=0)]
    #: device ids whose readings are lost (empty: every device)
    devices: list[_NonNegInt] = Field(default_factory=list)


class DataFaultsSpec(SpecModel):
    """Meter-reading faults and the polling answer (module docstring)."""

    loss_rate: Share = 0.0
    poll_failure_rate: Share = 0.0
    delay_rate: Share = 0.0
    delay_s: _NonNegInt = 0
    duplicate_rate: Share = 0.0
    #: a lost reading is backfilled from the meter's storage this long after the deadline
    backfill_delay_s: _NonNegInt | None = 900
    bursts: list[BurstSpec] = Field(default_factory=list)
    polling: PollingSpec = PollingSpec()
    estimate: Literal["schedule", "last"] = "schedule"
    #: per-device overrides of ``loss_rate`` (device id -> rate)
    device_loss_rate: dict[int, Share] = Field(default_factory=dict)


class OutageWindowSpec(SpecModel):
    """The JSON-RPC endpoint answers nothing while the run's simulated clock is in
    ``[start_s, start_s + duration_s)`` (seconds from the scenario start)."""

    start_s: _NonNegInt
    duration_s: Annotated[float, Field(gt=0)]


class GasSpikeSpec(SpecModel):
    """Gas prices and base fees read ``factor`` times higher while the run's simulated clock
    is in ``[start_s, start_s + duration_s)`` (scenario seconds)."""

    start_s: _NonNegInt
    duration_s: Annotated[float, Field(gt=0)]
    factor: Annotated[float, Field(ge=1, le=1000)] = 10.0


class ChainFaultsSpec(SpecModel):
    """A flaky chain between the twin and its node (module docstring): faults happen on the
    run's simulated clock, which the twin's retries and deadlines wait on too."""

    outages: list[OutageWindowSpec] = Field(default_factory=list)
    #: share of raw transactions the proxy swallows (answers a hash, never forwards)
    drop_rate: Share = 0.0
    #: share of raw transactions held back ``delay_s`` (simulated seconds) before forwarding
    delay_rate: Share = 0.0
    delay_s: NonNegFloat = 2.0
    #: scenario seconds at which the node is stopped and restarted from its dumped state
    restarts_s: list[_NonNegInt] = Field(default_factory=list)
    gas_spikes: list[GasSpikeSpec] = Field(default_factory=list)
    #: how long the twin waits out an unreachable node before it stops the run (resumable)
    deadline_s: Annotated[float, Field(gt=0)] = 600.0
    #: how long the twin waits for a receipt before it resends the same signed transaction
    resend_after_s: Annotated[float, Field(gt=0)] = 3.0


def comm_problems(*, data: DataFaultsSpec | None, chain: ChainFaultsSpec | None,
                  interval_s: int, duration_s: int, ledger: str,
                  device_ids: set[int] | None = None) -> list[tuple[str, str]]:
    """Cross-field rules of ``faults.data`` / ``faults.chain`` as ``(path, message)``."""
    out: list[tuple[str, str]] = []
    if data is not None:
        p, where = data.polling, "faults.data.polling"
        if p.deadline_s >= interval_s:
            out.append((f"{where}.deadline_s", f"({p.deadline_s} s) must end before the next "
                        f"interval's settlement (market.interval_s = {interval_s} s)"))
        if p.retries * p.retry_interval_s > p.deadline_s:
            out.append((f"{where}.retries", f"{p.retries} retries {p.retry_interval_s} s apart "
                        f"({p.retries * p.retry_interval_s} s) cannot finish before "
                        f"deadline_s ({p.deadline_s} s); lower retries or retry_interval_s"))
        if data.delay_rate > 0 and data.delay_s == 0:
            out.append(("faults.data.delay_s", "must be > 0 when delay_rate > 0"))
        for j, b in enumerate(data.bursts):
            if b.start_s >= duration_s:
                out.append((f"faults.data.bursts.{j}.start_s",
                            f"({b.start_s}) is after the run's end (duration_s = {duration_s})"))
            if device_ids is not None:
                for i, d in enumerate(b.devices):
                    if d not in device_ids:
                        out.append((f"faults.data.bursts.{j}.devices.{i}", f"no device {d}"))
    if chain is not None:
        if ledger != "chain":
            out.append(("faults.chain", "needs market.ledger: chain"))
        if chain.resend_after_s >= chain.deadline_s:
            out.append(("faults.chain.resend_after_s", f"({chain.resend_after_s} s) must be "
                        f"below deadline_s ({chain.deadline_s} s)"))
        starts = [(f"outages.{j}.start_s", o.start_s) for j, o in enumerate(chain.outages)]
        starts += [(f"restarts_s.{j}", r) for j, r in enumerate(chain.restarts_s)]
        starts += [(f"gas_spikes.{j}.start_s", g.start_s) for j, g in enumerate(chain.gas_spikes)]
        out += [(f"faults.chain.{p}", f"({t}) is after the run's end (duration_s = {duration_s})")
                for p, t in starts if t >= duration_s]
    return out
