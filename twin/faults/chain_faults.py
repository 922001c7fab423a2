"""A run on a flaky chain (``faults.chain``): the fault-injecting proxy in front of the node,
the transaction client's retry policy, and the incident log the run records.

:class:`FaultyChainLedger` wraps the market's chain ledger (every attribute is the ledger's):
its ``set_time`` first tells the proxy the run's clock (faults start at their scenario
time), and :meth:`FaultyChainLedger.drain_fault_log` returns the rows of the
``chain_incidents`` and ``tx_latency`` tables since the last call. An injected fault's
recovery time is when the twin had ridden through it: for an outage or a restart, the end of
the twin's wait for the node overlapping it (or the fault's own end when the twin sent
nothing meanwhile); for a dropped or delayed transaction, its receipt.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from twin.chain.tx import RetryPolicy
from twin.faults.comm_spec import ChainFaultsSpec
from twin.faults.rpc_proxy import RpcProxy

__all__ = ["FaultyChainLedger", "faulty", "proxied_web3", "retry_policy"]


def retry_policy(spec: ChainFaultsSpec) -> RetryPolicy:
    return RetryPolicy(deadline_s=spec.deadline_s, resend_after_s=spec.resend_after_s)


class FaultyChainLedger:
    """The chain ledger behind the proxy (module docstring)."""

    def __init__(self, ledger: Any, *, proxy: RpcProxy, tx: Any) -> None:
        self._ledger = ledger
        self._proxy = proxy
        self._tx = tx
        self._t0 = time.monotonic()
        self._done_injected = 0
        self._used: set[int] = set()  # twin incidents matched to an injected fault
        self._done_twin = 0
        self._done_latency = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def set_time(self, now_s: int) -> None:
        self._proxy.at_time(now_s)
        self._ledger.set_time(now_s)

    def _recovered(self, ev: dict[str, Any]) -> float:
        twin = self._tx.incidents
        if ev["kind"] in ("dropped_tx", "delayed_tx"):
            for lat in self._tx.latencies:
                if lat["tx_hash"] == ev["detail"]:
                    return float(ev["start"] + lat["latency_s"])
            return float(ev["end"])
        for j, inc in enumerate(twin):
            if inc["kind"] == "unreachable" and inc["start"] <= ev["end"] and (
                    math.isnan(inc["end"]) or inc["end"] >= ev["start"]):
                self._used.add(j)
                return float(inc["end"])
        return float(ev["end"])

    def drain_fault_log(self, *, time_s: int, interval: int, final: bool = False
                        ) -> dict[str, list[dict[str, Any]]]:
        """Rows of ``chain_incidents`` and ``tx_latency`` since the last call (an incident
        still going on waits for the next call unless ``final``)."""
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        injected = self._proxy.injected
        while self._done_injected < len(injected):
            ev = injected[self._done_injected]
            if ev["end"] > now and not final:
                break
            rec = self._recovered(ev)
            rows.append(self._row(time_s, interval, ev["kind"], ev["start"], rec, 1, "",
                                  ev["detail"]))
            self._done_injected += 1
        twin = self._tx.incidents
        if self._done_injected == len(injected):  # else: a fault still going on may match
            for j in range(self._done_twin, len(twin)):
                inc = twin[j]
                # a wait matched to an injected fault is that fault's recovery; a resend is
                # the recovery of a dropped, delayed or restart-lost transaction
                if j in self._used or inc["kind"] == "resent_tx":
                    continue
                rows.append(self._row(time_s, interval, inc["kind"], inc["start"], inc["end"],
                                      inc["attempts"], inc["method"], "seen by the twin"))
            self._done_twin = len(twin)
        lat = self._tx.latencies[self._done_latency:]
        self._done_latency = len(self._tx.latencies)
        return {"chain_incidents": rows,
                "tx_latency": [{"time_s": time_s, "interval": interval if r["interval"] is None
                                else int(r["interval"]), "tx_hash": r["tx_hash"],
                                "function": r["function"], "latency_s": float(r["latency_s"]),
                                "sends": int(r["sends"])} for r in lat]}

    def _row(self, time_s: int, interval: int, kind: str, start: float, end: float,
             attempts: int, method: str, detail: str) -> dict[str, Any]:
        return {"time_s": time_s, "interval": interval, "kind": kind,
                "started_wall_s": start - self._t0, "recovered_wall_s": end - self._t0,
                "duration_s": end - start, "attempts": int(attempts), "method": method,
                "detail": detail}


def _riding_provider(url: str, *, deadline_s: float) -> Any:
    """An HTTP provider that waits out an unreachable node up to ``deadline_s`` (then
    :class:`~twin.chain.tx.ChainOutage`, resumable): the reads web3 contract objects make
    themselves (the market services' clients) ride through an outage like the ledger's own
    calls. Only connection failures are retried; every request is a read or the resend of the
    same signed bytes, so a retry never does anything twice."""
    import requests
    from web3 import HTTPProvider

    from twin.chain.tx import ChainOutage

    class RidingProvider(HTTPProvider):
        def make_request(self, method: Any, params: Any) -> Any:
            t0, pause = time.monotonic(), 0.02
            while True:
                try:
                    return super().make_request(method, params)
                except requests.exceptions.ConnectionError as exc:
                    if time.monotonic() - t0 > deadline_s:
                        raise ChainOutage(
                            f"the chain node at {url} stayed unreachable for more than "
                            f"faults.chain.deadline_s ({deadline_s:g} s) during {method}; the run "
                            "stops here and can be resumed (twin run --resume)") from exc
                    time.sleep(pause)
                    pause = min(pause * 2, 0.5)

    return RidingProvider(url, request_kwargs={"timeout": 120.0})


@contextlib.contextmanager
def proxied_web3(node: Any, spec: ChainFaultsSpec, *, seed: int, skip_before_s: int,
                 holder: list[RpcProxy]) -> Iterator[Any]:
    """The proxy in front of ``node`` (restarts go through ``node.restart``) and a web3 over
    it; the proxy is appended to ``holder`` for :class:`FaultyChainLedger`."""
    from web3 import Web3

    with RpcProxy(spec, upstream=node.url, seed=seed, restart=node.restart,
                  skip_before_s=skip_before_s) as proxy:
        holder.append(proxy)
        yield Web3(_riding_provider(proxy.url, deadline_s=spec.deadline_s))


def faulty(ledger: Any, spec: ChainFaultsSpec, proxy: RpcProxy) -> FaultyChainLedger:
    """The run's ledger on a flaky chain: retry policy on, incidents logged."""
    tx = ledger.tx
    tx.retry = retry_policy(spec)
    return FaultyChainLedger(ledger, proxy=proxy, tx=tx)
