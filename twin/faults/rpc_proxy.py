"""The fault-injecting JSON-RPC proxy between the twin and its node (``faults.chain``): a
real HTTP server on 127.0.0.1 in front of the real Anvil, run as a process of its own
(:mod:`twin.faults.rpc_proxy_server`, standard library only) so that forwarding costs the
twin's interpreter nothing.

Its faults happen on the run's **simulated** clock, which every request carries (the
``X-Twin-Sim-Time`` header, kept by :class:`twin.faults.chain_faults.FaultClock`): an outage
window or a gas-price spike is ``[start_s, start_s + duration_s)`` in scenario seconds, a
delayed transaction reaches the node ``delay_s`` simulated seconds later. The twin's retries
wait on the same clock, so a 5-minute outage costs the run no 5 wall minutes. Node restarts
are done by the twin itself (:meth:`twin.chain.anvil.AnvilNode.restart`) and then announced to
the proxy (:meth:`RpcProxy.set_upstream`).

:class:`RpcProxy` is the twin's handle: it starts the server, tells it the schedule (the
scheduled faults up to ``skip_before_s`` happened in the run a resume continues: left out),
reads its log of injected transaction faults, and stops it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from twin.faults.comm_spec import ChainFaultsSpec

__all__ = ["RpcProxy"]

_SERVER = Path(__file__).with_name("rpc_proxy_server.py")


class RpcProxy:
    """The proxy process and its fault schedule (module docstring)."""

    def __init__(self, spec: ChainFaultsSpec, *, upstream: str, seed: int,
                 skip_before_s: int = -1, startup_timeout_s: float = 30.0) -> None:
        self.spec = spec
        self.skip_before_s = skip_before_s
        cfg = {
            "upstream": upstream, "seed": int(seed), "drop_rate": spec.drop_rate,
            "delay_rate": spec.delay_rate, "delay_s": spec.delay_s,
            "outages": [(o.start_s, o.start_s + o.duration_s) for o in spec.outages
                        if o.start_s > skip_before_s],
            "gas_spikes": [(g.start_s, g.start_s + g.duration_s, g.factor) for g in spec.gas_spikes
                           if g.start_s > skip_before_s],
        }
        self._proc = subprocess.Popen(
            [sys.executable, str(_SERVER), json.dumps(cfg)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()  # "ready URL" (EOF: it died)
        if not line.startswith("ready "):
            self._proc.kill()
            raise RuntimeError(f"the fault-injecting RPC proxy did not start ({_SERVER}): "
                               f"{line or 'no output'} (exit {self._proc.wait()})")
        self.url = line.split(" ", 1)[1]
        self._session = requests.Session()
        self._session.trust_env = False
        self._log_read = 0
        #: the run's clock and node (set by twin.faults.chain_faults.proxied_web3)
        self.clock: Any = None
        self.node: Any = None

    def __enter__(self) -> RpcProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the server stops when its input closes
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _call(self, method: str, params: list[Any]) -> Any:
        r = self._session.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                               "params": params}, timeout=60)
        return r.json()["result"]

    def new_tx_faults(self) -> list[dict[str, Any]]:
        """Transaction faults injected since the last call: ``{kind, sim_s, detail}`` (kind
        ``dropped_tx`` or ``delayed_tx``, detail the transaction's hash)."""
        rows: list[dict[str, Any]] = self._call("twin_proxyLog", [self._log_read])
        self._log_read += len(rows)
        return rows

    def set_upstream(self, url: str) -> None:
        """The node restarted at ``url``: forward there (the twin's clock settings again)."""
        self._call("twin_setUpstream", [url])
