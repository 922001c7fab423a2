"""A run on a flaky chain (``faults.chain``): the fault-injecting proxy in front of the node,
the clock its faults and the twin's retries share, the transaction client's retry policy,
and the incident log the run records.

**Simulated time.** The chain's faults are scheduled in scenario seconds, and the twin waits
them out on the run's simulated clock (:class:`FaultClock`): a retry's pause moves that clock
instead of sleeping, every request tells the proxy the clock, and the proxy refuses requests
while the clock is inside an outage window. A 5-minute outage is 5 simulated minutes of
retries (about 160 attempts, well under a second of wall time), recorded as such; the deadlines
(``faults.chain.deadline_s``, ``resend_after_s``) are on the same clock. Outside every
fault window, and when no transaction is dropped or delayed at random, the twin sends to the
node itself (the proxy would forward unchanged): the extra hop costs nothing then.

:class:`FaultyChainLedger` wraps the market's chain ledger (every attribute is the ledger's):
its ``set_time`` first moves the clock, starts the scheduled faults due (a node restart is
done here: dump, stop, reload, and the proxy told the new node) and then moves the ledger;
:meth:`FaultyChainLedger.drain_fault_log` returns the rows of the ``chain_incidents`` and
``tx_latency`` tables since the last call. Times in those rows are on the twin's clock (wall
seconds plus what it waited out): an injected fault's recovery is when the twin had ridden
through it: for an outage, the end of the twin's wait for the node overlapping it (or the
window's own end when the twin sent nothing meanwhile); for a restart, the node back; for a
dropped or delayed transaction, its receipt.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from twin.chain.tx import RetryPolicy
from twin.faults.comm_spec import ChainFaultsSpec
from twin.faults.rpc_proxy import RpcProxy
from twin.faults.rpc_proxy_server import CLOCK_HEADER

__all__ = ["FaultClock", "FaultyChainLedger", "faulty", "proxied_web3", "retry_policy"]


#: the longest pause (simulated seconds) between two attempts to reach an unreachable node:
#: a recovery is seen at most this late; a 5-minute outage takes about 160 attempts
MAX_PAUSE_S = 2.0


#: outside every fault window (and without random transaction faults) requests go to the node
#: directly: the proxy would forward them unchanged (False: every request through the proxy)
BYPASS_OUTSIDE_FAULTS = True


class FaultClock:
    """The run's simulated clock as the flaky chain sees it (module docstring): ``sim_s`` is
    the market step's time plus what the twin waited out since; :meth:`now` is the twin's
    own clock (monotonic wall time plus every wait), for deadlines and latencies.

    It also routes the requests (``route``): through the proxy while ``sim_s`` is inside a
    fault window of ``spec`` (an outage or a gas spike; always when transactions are dropped
    or delayed at random), else, the proxy having nothing to do, straight to the node — the
    same answers without the extra hop."""

    def __init__(self, spec: ChainFaultsSpec | None = None, *, proxy_url: str = "",
                 node_url: str = "", skip_before_s: int = -1) -> None:
        self.sim_s: float | None = None  # None until the run's first market step
        self.waited_s = 0.0
        self._headers: list[MutableMapping[str, str]] = []
        self.proxy_url, self.node_url = proxy_url, node_url
        self._windows: list[tuple[float, float]] = []
        self._always = spec is None or not BYPASS_OUTSIDE_FAULTS or bool(
            spec.drop_rate or spec.delay_rate)
        if spec is not None:
            self._windows = [(o.start_s, o.start_s + o.duration_s) for o in spec.outages
                             if o.start_s > skip_before_s]
            self._windows += [(g.start_s, g.start_s + g.duration_s) for g in spec.gas_spikes
                              if g.start_s > skip_before_s]
        self._routes: list[Callable[[str], None]] = []
        self._url = ""

    def route(self, set_url: Callable[[str], None]) -> None:
        """Call ``set_url`` with the URL to send to whenever it changes."""
        self._routes.append(set_url)
        set_url(self.url())

    def url(self) -> str:
        if self._always or not self.node_url or self.sim_s is None:
            return self.proxy_url
        inside = any(a <= self.sim_s < b for a, b in self._windows)
        return self.proxy_url if inside else self.node_url

    def node_moved(self, url: str) -> None:
        """The node restarted at ``url``."""
        self.node_url = url
        self._publish()

    def attach(self, headers: MutableMapping[str, str]) -> None:
        """Keep ``headers`` (an HTTP session's) carrying the clock."""
        self._headers.append(headers)
        self._publish()

    def set_time(self, now_s: float) -> None:
        self.sim_s = float(now_s) if self.sim_s is None else max(self.sim_s, float(now_s))
        self._publish()

    def now(self) -> float:
        return time.monotonic() + self.waited_s

    def sleep(self, seconds: float) -> None:
        """A retry's pause: the clock moves on, nothing sleeps."""
        self.waited_s += seconds
        if self.sim_s is not None:
            self.sim_s += seconds
        self._publish()

    def header(self) -> dict[str, str]:
        return {} if self.sim_s is None else {CLOCK_HEADER: repr(self.sim_s)}

    def _publish(self) -> None:
        if self.sim_s is not None:
            for h in self._headers:
                h[CLOCK_HEADER] = repr(self.sim_s)
        url = self.url()
        if url != self._url:
            self._url = url
            for set_url in self._routes:
                set_url(url)


def retry_policy(spec: ChainFaultsSpec, clock: FaultClock | None = None) -> RetryPolicy:
    if clock is None:
        return RetryPolicy(deadline_s=spec.deadline_s, resend_after_s=spec.resend_after_s)
    return RetryPolicy(deadline_s=spec.deadline_s, resend_after_s=spec.resend_after_s,
                       now=clock.now, sleep=clock.sleep, max_pause_s=MAX_PAUSE_S)


class FaultyChainLedger:
    """The chain ledger behind the proxy (module docstring)."""

    def __init__(self, ledger: Any, *, proxy: RpcProxy, tx: Any, clock: FaultClock,
                 node: Any = None) -> None:
        self._ledger = ledger
        self._proxy = proxy
        self._tx = tx
        self._clock = clock
        self._node = node
        self._t0 = clock.now()
        spec, skip = proxy.spec, proxy.skip_before_s
        #: scheduled faults not yet started: (scenario time, kind, index)
        self._due = sorted([(o.start_s, "outage", j) for j, o in enumerate(spec.outages)]
                           + [(r, "restart", j) for j, r in enumerate(spec.restarts_s)]
                           + [(g.start_s, "gas_spike", j) for j, g in enumerate(spec.gas_spikes)])
        self._due = [d for d in self._due if d[0] > skip]
        #: every injected fault: kind, start/end (twin clock), detail
        self.injected: list[dict[str, Any]] = []
        self._tx_faults: list[dict[str, Any]] = []  # the proxy's, waiting for their receipts
        self._done_injected = 0
        self._used: set[int] = set()  # twin incidents matched to an injected fault
        self._done_twin = 0
        self._done_latency = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def set_time(self, now_s: int) -> None:
        self._clock.set_time(now_s)
        spec = self._proxy.spec
        while self._due and self._due[0][0] <= now_s:
            _, kind, j = self._due.pop(0)
            t0 = self._clock.now()
            if kind == "outage":
                o = spec.outages[j]
                self.injected.append({"kind": "outage", "start": t0, "end": t0 + o.duration_s,
                                      "detail": f"outages.{j} at {o.start_s} s"})
            elif kind == "gas_spike":
                g = spec.gas_spikes[j]
                self.injected.append({"kind": "gas_spike", "start": t0, "end": t0 + g.duration_s,
                                      "detail": f"gas_spikes.{j}: x{g.factor}"})
            elif self._node is not None:  # a restart: the node reloads its dumped state
                url = self._node.restart()
                self._proxy.set_upstream(url)
                self._clock.node_moved(url)
                self.injected.append({"kind": "restart", "start": t0, "end": self._clock.now(),
                                      "detail": f"restarts_s.{j} at {spec.restarts_s[j]} s"})
        self._ledger.set_time(now_s)

    def _recovered(self, ev: dict[str, Any]) -> float:
        twin = self._tx.incidents
        for j, inc in enumerate(twin):
            if inc["kind"] == "unreachable" and inc["start"] <= ev["end"] and (
                    math.isnan(inc["end"]) or inc["end"] >= ev["start"]):
                self._used.add(j)
                return float(inc["end"])
        return float(ev["end"])

    def _take_tx_faults(self, *, final: bool) -> None:
        """The proxy's dropped and delayed transactions whose receipts came (all if
        ``final``), as injected faults from send to receipt."""
        self._tx_faults += self._proxy.new_tx_faults()
        sent = {r["tx_hash"]: r for r in self._tx.latencies}
        while self._tx_faults:
            f = self._tx_faults[0]
            lat = sent.get(f["detail"])
            if lat is None and not final:
                break
            now = self._clock.now()
            start = float(lat["sent"]) if lat is not None else now
            end = start + float(lat["latency_s"]) if lat is not None else now
            self.injected.append({"kind": f["kind"], "start": start, "end": end,
                                  "detail": f["detail"], "tx": True})
            self._tx_faults.pop(0)

    def drain_fault_log(self, *, time_s: int, interval: int, final: bool = False
                        ) -> dict[str, list[dict[str, Any]]]:
        """Rows of ``chain_incidents`` and ``tx_latency`` since the last call (an incident
        still going on waits for the next call unless ``final``)."""
        self._take_tx_faults(final=final)
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        injected = self.injected
        while self._done_injected < len(injected):
            ev = injected[self._done_injected]
            if ev["end"] > now and not final:
                break
            rec = float(ev["end"]) if ev.get("tx") or ev["kind"] == "restart" else self._recovered(ev)
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


def _riding_provider(url: str, *, deadline_s: float, clock: FaultClock) -> Any:
    """An HTTP provider that carries the run's clock to the proxy and waits out an
    unreachable node up to ``deadline_s`` on that clock (then
    :class:`~twin.chain.tx.ChainOutage`, resumable): the reads web3 contract objects make
    themselves (the market services' clients) ride through an outage like the ledger's own
    calls. Only connection failures are retried; every request is a read or the resend of the
    same signed bytes, so a retry never does anything twice."""
    import requests
    from web3 import HTTPProvider

    from twin.chain.tx import ChainOutage

    class RidingProvider(HTTPProvider):
        def set_url(self, to: str) -> None:
            self.endpoint_uri = to  # type: ignore[assignment]

        def get_request_headers(self) -> dict[str, str]:  # type: ignore[override]
            return {**HTTPProvider.get_request_headers(), **clock.header()}

        def make_request(self, method: Any, params: Any) -> Any:
            t0, pause = clock.now(), 0.02
            while True:
                try:
                    return super().make_request(method, params)
                except requests.exceptions.ConnectionError as exc:
                    if clock.now() - t0 > deadline_s:
                        raise ChainOutage(
                            f"the chain node at {url} stayed unreachable for more than "
                            f"faults.chain.deadline_s ({deadline_s:g} s) during {method}; the run "
                            "stops here and can be resumed (twin run --resume)") from exc
                    clock.sleep(pause)
                    pause = min(pause * 2, MAX_PAUSE_S)

    return RidingProvider(url, request_kwargs={"timeout": 120.0})


@contextlib.contextmanager
def proxied_web3(node: Any, spec: ChainFaultsSpec, *, seed: int, skip_before_s: int,
                 holder: list[RpcProxy]) -> Iterator[Any]:
    """The proxy in front of ``node`` (restarts go through ``node.restart``) and a web3 over
    it; the proxy is appended to ``holder`` for :func:`faulty` (with its ``clock`` and
    ``node``)."""
    from web3 import Web3

    with RpcProxy(spec, upstream=node.url, seed=seed, skip_before_s=skip_before_s) as proxy:
        clock = FaultClock(spec, proxy_url=proxy.url, node_url=node.url,
                           skip_before_s=skip_before_s)
        proxy.clock, proxy.node = clock, node
        holder.append(proxy)
        provider = _riding_provider(proxy.url, deadline_s=spec.deadline_s, clock=clock)
        clock.route(provider.set_url)
        yield Web3(provider)


def faulty(ledger: Any, spec: ChainFaultsSpec, proxy: RpcProxy) -> FaultyChainLedger:
    """The run's ledger on a flaky chain: retry policy on the run's clock, incidents logged."""
    clock: FaultClock = proxy.clock or FaultClock(spec, proxy_url=proxy.url)
    tx = ledger.tx
    tx.retry = retry_policy(spec, clock)
    if tx.http_headers is not None:
        clock.attach(tx.http_headers)
        clock.route(lambda url: tx.set_endpoint(url))
    return FaultyChainLedger(ledger, proxy=proxy, tx=tx, clock=clock,
                             node=proxy.node)
