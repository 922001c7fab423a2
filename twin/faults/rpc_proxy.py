"""A fault-injecting JSON-RPC proxy on 127.0.0.1 between the twin and its node (a real
HTTP server in front of the real Anvil; ``faults.chain``).

It forwards every request unchanged except while a fault is in force:

- **outage**: every request is answered by closing the connection (the node is
  unreachable);
- **dropped transaction** (``drop_rate``): ``eth_sendRawTransaction`` answers the
  transaction's hash but the transaction never reaches the node;
- **delayed transaction** (``delay_rate``): it answers the hash at once and forwards the
  transaction ``delay_s`` later;
- **node restart**: the node dumps its state, stops, and a new node starts from that state
  (:meth:`twin.chain.anvil.AnvilNode.restart`; its mempool is lost); meanwhile the proxy is
  unreachable; afterwards the clock settings the twin had made are applied again;
- **gas-price spike**: ``eth_gasPrice``, ``eth_maxPriorityFeePerGas`` and the blocks'
  ``baseFeePerGas`` read ``factor`` times higher.

Faults are triggered on the run's clock (:meth:`RpcProxy.at_time`, the market's
``set_time``) and last wall seconds; the random choices use their own seeded stream. Every
fault injected is logged (:attr:`RpcProxy.injected`) with its wall start and end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import requests
from eth_utils import keccak

from twin.faults.comm_spec import ChainFaultsSpec

__all__ = ["RpcProxy"]

#: RPC calls whose last parameters are node settings the twin made: applied again after a
#: restart (Anvil forgets them)
_SETTINGS = ("anvil_setBlockTimestampInterval", "evm_setNextBlockTimestamp")


class RpcProxy:
    """The proxy server and its fault schedule (module docstring)."""

    def __init__(self, spec: ChainFaultsSpec, *, upstream: str, seed: int,
                 restart: Callable[[], str] | None = None, skip_before_s: int = -1) -> None:
        self.spec = spec
        self.upstream = upstream
        self._restart = restart  # restarts the node from its state; returns the new URL
        self._rng = np.random.default_rng([int(seed), 21, 2])
        self._lock = threading.Lock()
        self._down_until = 0.0  # wall (monotonic) time until which the node is unreachable
        self._spike: tuple[float, float] = (0.0, 1.0)  # (until, factor)
        self._settings: dict[str, list[Any]] = {}
        self._armed = False  # random tx faults only once the run's market steps begin
        self._local = threading.local()
        # (kind, index) of the scheduled faults already started; those before skip_before_s
        # happened in the run this one resumes
        self._started: set[tuple[str, int]] = set()
        for j, o in enumerate(spec.outages):
            if o.start_s <= skip_before_s:
                self._started.add(("outage", j))
        for j, r in enumerate(spec.restarts_s):
            if r <= skip_before_s:
                self._started.add(("restart", j))
        #: every injected fault: kind, wall start/end (time.monotonic), detail
        self.injected: list[dict[str, Any]] = []
        self._timers: list[threading.Timer] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # the headers and the body go out as two writes on a kept-alive connection: with
            # Nagle's algorithm the body waits for the client's delayed ACK (~40 ms a request)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                out = proxy._handle(body)
                if out is None:  # unreachable: drop the connection without an answer
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="twin-rpc-proxy")

    # --- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> RpcProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self._server.shutdown()
        self._server.server_close()

    # --- the schedule -----------------------------------------------------------------------
    def at_time(self, now_s: int) -> None:
        """The run's clock reached ``now_s``: start the faults due."""
        self._armed = True
        for j, o in enumerate(self.spec.outages):
            if o.start_s <= now_s and ("outage", j) not in self._started:
                self._started.add(("outage", j))
                self._outage(o.duration_s, kind="outage", detail=f"outages.{j} at {o.start_s} s")
        for j, r in enumerate(self.spec.restarts_s):
            if r <= now_s and ("restart", j) not in self._started:
                self._started.add(("restart", j))
                self._restart_node(detail=f"restarts_s.{j} at {r} s")
        for j, g in enumerate(self.spec.gas_spikes):
            if g.start_s <= now_s and ("gas", j) not in self._started:
                self._started.add(("gas", j))
                t0 = time.monotonic()
                with self._lock:
                    self._spike = (t0 + g.duration_s, g.factor)
                self.injected.append({"kind": "gas_spike", "start": t0, "end": t0 + g.duration_s,
                                      "detail": f"gas_spikes.{j}: x{g.factor}"})

    def _outage(self, duration_s: float, *, kind: str, detail: str) -> None:
        t0 = time.monotonic()
        with self._lock:
            self._down_until = max(self._down_until, t0 + duration_s)
        self.injected.append({"kind": kind, "start": t0, "end": t0 + duration_s, "detail": detail})

    def _restart_node(self, *, detail: str) -> None:
        if self._restart is None:
            return
        t0 = time.monotonic()
        with self._lock:
            self._down_until = float("inf")
        try:
            self.upstream = self._restart()
            for method in _SETTINGS:  # the twin's clock settings, applied again
                if method in self._settings:
                    self._forward({"jsonrpc": "2.0", "id": 0, "method": method,
                                   "params": self._settings[method]})
        finally:
            with self._lock:
                self._down_until = 0.0
        self.injected.append({"kind": "restart", "start": t0, "end": time.monotonic(),
                              "detail": detail})

    # --- requests ---------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False
        return s

    def _forward(self, req: dict[str, Any]) -> dict[str, Any]:
        resp = self._session().post(self.upstream, json=req, timeout=300)
        return dict(resp.json())

    def _handle(self, body: bytes) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            down, (spike_until, factor) = now < self._down_until, self._spike
        if down:
            return None
        parsed = json.loads(body)
        if isinstance(parsed, list):  # a JSON-RPC batch: each request meets the faults alone
            answers = [self._one(req, now=now, spike_until=spike_until, factor=factor)
                       for req in parsed]
            if any(a is None for a in answers):
                return None
            return json.dumps(answers).encode()
        out = self._one(parsed, now=now, spike_until=spike_until, factor=factor)
        return None if out is None else json.dumps(out).encode()

    def _one(self, req: dict[str, Any], *, now: float, spike_until: float,
             factor: float) -> dict[str, Any] | None:
        """One request's answer (None: the node went away)."""
        method = req.get("method")
        if method in _SETTINGS:
            self._settings[method] = req.get("params", [])
        if method == "eth_sendRawTransaction" and self._armed:
            u = self._rng.random(2)
            raw = str(req["params"][0])
            tx_hash = "0x" + keccak(hexstr=raw).hex()
            if u[0] < self.spec.drop_rate:
                self.injected.append({"kind": "dropped_tx", "start": now, "end": now,
                                      "detail": tx_hash})
                return {"jsonrpc": "2.0", "id": req.get("id"), "result": tx_hash}
            if u[1] < self.spec.delay_rate:
                self.injected.append({"kind": "delayed_tx", "start": now,
                                      "end": now + self.spec.delay_s, "detail": tx_hash})
                timer = threading.Timer(self.spec.delay_s, self._late_forward, args=(dict(req),))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
                return {"jsonrpc": "2.0", "id": req.get("id"), "result": tx_hash}
        try:
            out = self._forward(req)
        except (requests.RequestException, ValueError):
            return None  # the node went away under us (a restart): unreachable
        if now < spike_until:
            _spike(out, method, factor)
        return out

    def _late_forward(self, req: dict[str, Any]) -> None:
        while time.monotonic() < self._down_until:  # a delayed tx waits out an outage too
            time.sleep(0.05)
        try:
            self._forward(req)  # "already known" / "nonce too low" once resent: never twice
        except (requests.RequestException, ValueError):
            pass


def _spike(out: dict[str, Any], method: str | None, factor: float) -> None:
    res = out.get("result")
    if method in ("eth_gasPrice", "eth_maxPriorityFeePerGas") and isinstance(res, str):
        out["result"] = hex(int(int(res, 16) * factor))
    elif method == "eth_getBlockByNumber" and isinstance(res, dict) and "baseFeePerGas" in res:
        res["baseFeePerGas"] = hex(int(int(res["baseFeePerGas"], 16) * factor))
