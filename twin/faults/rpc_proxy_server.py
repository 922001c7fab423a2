"""The fault-injecting JSON-RPC proxy's server, a process of its own (``python -m
twin.faults.rpc_proxy_server CONFIG``; started by :class:`twin.faults.rpc_proxy.RpcProxy`).

It forwards every request to the node unchanged, except while a fault is in force **on the
run's simulated clock**: every request carries the twin's clock in the ``X-Twin-Sim-Time``
header (scenario seconds: the market step's time plus what the twin has waited out since,
:class:`twin.faults.chain_faults.FaultClock`), and

- **outage** ``[start_s, start_s + duration_s)``: the connection is closed without an answer
  (the node is unreachable);
- **gas-price spike**: ``eth_gasPrice``, ``eth_maxPriorityFeePerGas`` and the blocks'
  ``baseFeePerGas`` read ``factor`` times higher;
- **dropped transaction** (``drop_rate``): ``eth_sendRawTransaction`` answers the hash, the
  transaction never reaches the node;
- **delayed transaction** (``delay_rate``): the hash is answered at once and the transaction
  is forwarded before the first request whose clock is ``delay_s`` later;
- **lacking methods** (``lacks``, always): answered "does not exist" (-32601), as a node of
  another kind would.

JSON-RPC batches are forwarded as one batch; each transaction in it meets the faults alone.
Random choices come from their own seeded stream; transaction faults start with the first
request that carries a clock (the run's market steps). Two methods are the proxy's own, not
forwarded, and answered during an outage too: ``twin_proxyLog [from]`` (the transaction faults
injected, each ``{kind, sim_s, detail}``) and ``twin_setUpstream [url]`` (after a node restart:
the new node; the clock settings the twin had made are applied to it again). The server
imports only the standard library and a keccak, and runs in its own process: it costs the
twin's interpreter nothing.
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from Crypto.Hash import keccak

__all__ = ["ProxyState", "main"]

#: RPC calls whose last parameters are node settings the twin made: applied again after a
#: restart (Anvil forgets them)
_SETTINGS = ("anvil_setBlockTimestampInterval", "evm_setNextBlockTimestamp")
CLOCK_HEADER = "X-Twin-Sim-Time"


class _Upstream:
    """One keep-alive connection per thread to the node."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
        self._local = threading.local()

    def post(self, body: bytes) -> bytes:
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            try:
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                return conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


class ProxyState:
    """The fault schedule and what the proxy did (module docstring)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.up = _Upstream(cfg["upstream"])
        self.outages = [(float(a), float(b)) for a, b in cfg.get("outages", [])]
        self.spikes = [(float(a), float(b), float(f)) for a, b, f in cfg.get("gas_spikes", [])]
        self.drop_rate = float(cfg.get("drop_rate", 0.0))
        self.delay_rate = float(cfg.get("delay_rate", 0.0))
        self.delay_s = float(cfg.get("delay_s", 0.0))
        self.rng = random.Random(f"{cfg.get('seed', 0)}-21-2")
        self.lock = threading.Lock()
        self.log: list[dict[str, Any]] = []
        self.held: list[tuple[float, bytes]] = []  # (due sim time, request body)
        self.settings: dict[str, Any] = {}
        #: methods answered "does not exist" (a node of another kind; tests of bad input)
        self.lacks = set(cfg.get("lacks", []))

    # --- one HTTP request ------------------------------------------------------------------
    def handle(self, body: bytes, sim: float | None) -> bytes | None:
        """The answer to one POST body (None: close the connection unanswered)."""
        parsed = json.loads(body)
        own = self._own(parsed)
        if own is not None:
            return own
        if sim is not None and any(a <= sim < b for a, b in self.outages):
            return None
        if sim is not None:
            self._release(sim)
        factor = next((f for a, b, f in self.spikes if sim is not None and a <= sim < b), 1.0)
        reqs = parsed if isinstance(parsed, list) else [parsed]
        answers: dict[int, dict[str, Any]] = {}  # position -> answer made here
        forward: list[tuple[int, dict[str, Any]]] = []
        for i, req in enumerate(reqs):
            method = req.get("method")
            if method in self.lacks:
                answers[i] = {"jsonrpc": "2.0", "id": req.get("id"), "error": {
                    "code": -32601, "message": f"the method {method} does not exist/is not available"}}
                continue
            if method in _SETTINGS:
                self.settings[method] = req.get("params", [])
            if method == "eth_sendRawTransaction" and sim is not None:
                faked = self._tx_fault(req, sim)
                if faked is not None:
                    answers[i] = faked
                    continue
            forward.append((i, req))
        if factor == 1.0 and len(forward) == len(reqs):  # untouched: the node's bytes as they are
            return self.up.post(body)
        if forward:
            if isinstance(parsed, list):
                out = json.loads(self.up.post(json.dumps([r for _, r in forward]).encode()))
                by_id = {a.get("id"): a for a in out} if isinstance(out, list) else {}
                for i, r in forward:
                    answers[i] = by_id.get(r.get("id"), {"jsonrpc": "2.0", "id": r.get("id"),
                                                         "error": {"message": "no answer"}})
            else:
                answers[0] = json.loads(self.up.post(body))
        if factor != 1.0:
            for i, a in answers.items():
                _spike(a, reqs[i].get("method"), factor)
        result: Any = [answers[i] for i in range(len(reqs))] if isinstance(parsed, list) else answers[0]
        return json.dumps(result).encode()

    def _tx_fault(self, req: dict[str, Any], sim: float) -> dict[str, Any] | None:
        with self.lock:
            u_drop, u_delay = self.rng.random(), self.rng.random()
        raw = str(req["params"][0])
        tx_hash = "0x" + keccak.new(data=bytes.fromhex(raw[2:]), digest_bits=256).hexdigest()
        if u_drop < self.drop_rate:
            kind = "dropped_tx"
        elif u_delay < self.delay_rate:
            kind = "delayed_tx"
            one = {"jsonrpc": "2.0", "id": 0, "method": "eth_sendRawTransaction", "params": [raw]}
            with self.lock:
                self.held.append((sim + self.delay_s, json.dumps(one).encode()))
        else:
            return None
        with self.lock:
            self.log.append({"kind": kind, "sim_s": sim, "detail": tx_hash})
        return {"jsonrpc": "2.0", "id": req.get("id"), "result": tx_hash}

    def _release(self, sim: float) -> None:
        """Forward the held transactions that are due (``already known`` once resent is fine:
        the node takes the same signed bytes once)."""
        with self.lock:
            due = [b for t, b in self.held if t <= sim]
            self.held = [(t, b) for t, b in self.held if t > sim]
        for b in due:
            try:
                self.up.post(b)
            except (OSError, http.client.HTTPException):
                pass  # the node went away: the twin's resend covers it

    def _own(self, parsed: Any) -> bytes | None:
        if not isinstance(parsed, dict):
            return None
        method, params = parsed.get("method"), parsed.get("params") or []
        if method == "twin_proxyLog":
            with self.lock:
                result: Any = self.log[int(params[0]) if params else 0:]
        elif method == "twin_setUpstream":
            self.up = _Upstream(str(params[0]))
            for m in _SETTINGS:  # the twin's clock settings, applied again
                if m in self.settings:
                    self.up.post(json.dumps({"jsonrpc": "2.0", "id": 0, "method": m,
                                             "params": self.settings[m]}).encode())
            result = True
        else:
            return None
        return json.dumps({"jsonrpc": "2.0", "id": parsed.get("id"), "result": result}).encode()


def _spike(out: dict[str, Any], method: str | None, factor: float) -> None:
    res = out.get("result")
    if method in ("eth_gasPrice", "eth_maxPriorityFeePerGas") and isinstance(res, str):
        out["result"] = hex(int(int(res, 16) * factor))
    elif method == "eth_getBlockByNumber" and isinstance(res, dict) and "baseFeePerGas" in res:
        res["baseFeePerGas"] = hex(int(int(res["baseFeePerGas"], 16) * factor))


def serve(cfg: dict[str, Any]) -> ThreadingHTTPServer:
    state = ProxyState(cfg)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out as two writes on a kept-alive connection: with Nagle's
        # algorithm the body would wait for the client's delayed ACK (~40 ms a request)
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            clock = self.headers.get(CLOCK_HEADER)
            try:
                out = state.handle(body, float(clock) if clock else None)
            except (OSError, http.client.HTTPException, ValueError):
                out = None  # the node went away under us (a restart): unreachable
            if out is None:
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], OSError):  # a client gone away is no error
                super().handle_error(request, client_address)

    return Server(("127.0.0.1", int(cfg.get("port", 0))), Handler)


def main(argv: list[str] | None = None) -> None:
    """``CONFIG`` (JSON) as the only argument; prints ``ready <url>`` once listening, and
    stops when its standard input closes (the twin went away)."""
    cfg = json.loads((argv or sys.argv[1:])[0])
    server = serve(cfg)
    threading.Thread(target=server.serve_forever, daemon=True, name="twin-rpc-proxy").start()
    print(f"ready http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    server.shutdown()


if __name__ == "__main__":
    main()
