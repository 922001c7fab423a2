"""Signature workers: large batches of EIP-712 messages hashed, signed or recovered on
several cores (:mod:`twin.market.signing_batch`).

A batch of at least ``GRIDTWIN_SIGN_BATCH_MIN`` messages (default 256; smaller batches,
e.g. every test's, stay in this process) is cut in one share per core: this process works
its own share while ``GRIDTWIN_SIGN_WORKERS`` worker processes (default: cores - 1; 0 = none)
work theirs. A worker is ``python -m twin.market.sign_pool`` on two pipes: it imports only
the signing module (~30 MB), reads length-prefixed requests and answers with the
signatures or the 20-byte signer addresses, and exits when its stdin closes (so it never
outlives the run). The results are byte for byte the one-process results; a worker that
dies or answers wrongly is an error naming it, never a silent fallback.
"""

from __future__ import annotations

import atexit
import itertools
import os
import struct
import subprocess
import sys
import threading
from typing import IO

__all__ = ["run_batch", "shutdown"]

_HEAD = struct.Struct("<BIII")  # op, row length, rows, extra bytes
_OPS = {"sign": 1, "recover": 2}
_OUT = {1: 65, 2: 20}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer") from None


def _work(op: int, separator: bytes, rows: bytes, row_len: int, extra: bytes) -> bytes:
    from twin.market.signing_batch import digests_of, recover_local, sign_digests_local

    digests = digests_of(separator, rows, row_len)
    return sign_digests_local(extra, digests) if op == 1 else recover_local(digests, extra)


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "twin.market.sign_pool"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def send(self, op: int, separator: bytes, rows: bytes, row_len: int, extra: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(_HEAD.pack(op, row_len, len(rows) // row_len, len(extra)))
        self.proc.stdin.write(separator)
        self.proc.stdin.write(rows)
        self.proc.stdin.write(extra)

    def receive(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        out = _read_exact(self.proc.stdout, n)
        if len(out) != n:
            raise RuntimeError(f"signature worker pid {self.proc.pid} died "
                               f"(exit {self.proc.poll()}) before answering its batch")
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _read_exact(f: IO[bytes], n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


_WORKERS: list[_Worker] = []
_LOCK = threading.Lock()  # one batch at a time on the workers (their pipes are shared)


_OWNER = [0]  # the pid whose workers these are (a forked child must not share them)


def _workers(n: int) -> list[_Worker]:
    if _OWNER[0] != os.getpid():  # first use, or inherited over fork: start this process's own
        _WORKERS.clear()
        _OWNER[0] = os.getpid()
        atexit.register(shutdown)
    while len(_WORKERS) < n:
        _WORKERS.append(_Worker())
    return _WORKERS[:n]


def shutdown() -> None:
    """Close the workers (their stdin: they exit); called at exit."""
    with _LOCK:
        if _OWNER[0] != os.getpid():  # a forked child's inherited list: its parent's workers
            _WORKERS.clear()
        while _WORKERS:
            _WORKERS.pop().close()


def run_batch(op_name: str, separator: bytes, rows: bytes, row_len: int, extra: bytes) -> bytes:
    """``sign`` (extra: 32-byte secrets, out: 65-byte signatures) or ``recover`` (extra:
    65-byte signatures, out: 20-byte addresses) of the encoded rows, in row order."""
    op = _OPS[op_name]
    n = len(rows) // row_len
    per = 32 if op == 1 else 65
    if len(rows) != n * row_len or len(extra) != n * per:
        raise ValueError(f"{op_name}: {n} rows of {row_len} bytes need {n * per} extra bytes, "
                         f"got {len(extra)} (rows {len(rows)} bytes)")
    n_workers = _env_int("GRIDTWIN_SIGN_WORKERS", max((os.cpu_count() or 1) - 1, 0))
    if n < _env_int("GRIDTWIN_SIGN_BATCH_MIN", 256) or n_workers <= 0:
        return _work(op, separator, rows, row_len, extra)
    shares = n_workers + 1
    cuts = [n * s // shares for s in range(shares + 1)]
    with _LOCK:
        workers = _workers(n_workers)
        for w, (a, b) in zip(workers, itertools.pairwise(cuts[1:]), strict=True):
            w.send(op, separator, rows[a * row_len:b * row_len], row_len, extra[a * per:b * per])
        mine = _work(op, separator, rows[:cuts[1] * row_len], row_len, extra[:cuts[1] * per])
        theirs = [w.receive((b - a) * _OUT[op])
                  for w, (a, b) in zip(workers, itertools.pairwise(cuts[1:]), strict=True)]
    return b"".join([mine, *theirs])


def _serve() -> None:
    """A worker's loop: requests on stdin, answers on stdout, until stdin closes."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = _read_exact(inp, _HEAD.size)
        if len(head) < _HEAD.size:
            return
        op, row_len, n, n_extra = _HEAD.unpack(head)
        separator = _read_exact(inp, 32)
        rows = _read_exact(inp, row_len * n)
        extra = _read_exact(inp, n_extra)
        out.write(_work(op, separator, rows, row_len, extra))
        out.flush()


if __name__ == "__main__":
    _serve()
