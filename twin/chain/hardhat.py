"""Hardhat's node as a second EVM: start the pinned ``node_modules`` Hardhat 2.x
(``hardhat node --hostname 127.0.0.1``) on a free loopback port with the project's
``hardhat.config.js`` (Cancun, 30 M gas blocks, blocks that may share a timestamp), and always
stop it. The twin reaches it like any node, through ``--rpc-url``; the funder is Hardhat's
public dev account 0 (the same dev key as Anvil's).

>>> with HardhatNode() as node:  # doctest: +SKIP
...     twin_run(["--rpc-url", node.url, "--funder-key", ANVIL_DEV_KEY])
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from twin.chain.anvil import _free_port, _rpc
from twin.chain.compile import project_root
from twin.errors import TwinError
from twin.lifecycle import die_with_parent

__all__ = ["HardhatError", "HardhatNode", "hardhat_binary"]


class HardhatError(TwinError):
    """Hardhat is missing, failed to start, or its RPC endpoint does not answer."""


def hardhat_binary(root: Path | None = None) -> Path:
    """``node_modules/.bin/hardhat`` of the project (``npm install`` puts the pinned 2.x there)."""
    path = (root or project_root()) / "node_modules" / ".bin" / "hardhat"
    if not path.exists():
        raise HardhatError(f"Hardhat not found at {path}: run `make setup` (or `npm install` in "
                           "the project root) to install the pinned hardhat 2.x")
    return path


class HardhatNode:
    """A child ``hardhat node`` on 127.0.0.1 (a context manager; stopped on exit)."""

    def __init__(self, *, startup_timeout_s: float = 90.0) -> None:
        self.root = project_root()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HardhatNode:
        cmd = [str(hardhat_binary(self.root)), "node", "--hostname", "127.0.0.1",
               "--port", str(self.port)]
        self._proc = subprocess.Popen(
            cmd, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise HardhatError(f"hardhat node exited with {self._proc.returncode}: {err[-2000:]}")
            try:
                _rpc(self.url, "eth_chainId", [])
                return self
            except (OSError, TwinError):
                time.sleep(0.3)
        self.stop()
        raise HardhatError(f"hardhat node did not answer on {self.url} within "
                           f"{self.startup_timeout_s:.0f} s")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the node and nothing else
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
