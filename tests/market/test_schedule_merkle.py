"""The day schedule's Merkle tree (twin/market/schedule_merkle.py): the numba kernel that
hashes a town day's schedules in one batch gives pycryptodome's keccak-256 (EIP-712 / the
EVM's) byte for byte, on every message length the tree uses and across the sponge's block
boundary; the batch path equals the small one."""

from __future__ import annotations

import numpy as np

from twin.market import schedule_merkle as sm
from twin.market._keccak_kernel import keccak_lanes
from twin.market.signing import _keccak


def test_numba_keccak_and_trees_equal_pycryptodome() -> None:
    rng = np.random.default_rng(7)
    for n_bytes in (8, 64, 128, 136, 160, 272, 280):  # 136: one whole rate block
        msg = rng.integers(0, 256, (4, n_bytes), dtype=np.uint8)
        got = keccak_lanes(msg.view("<u8")).view(np.uint8)
        assert [bytes(r) for r in got] == [_keccak(bytes(m)) for m in msg], n_bytes
    grids = rng.integers(-(2**40), 2**40, (sm.NUMBA_FROM_SLOTS // 96 + 1, 96, 4))
    big = sm.schedule_roots(grids)  # the numba batch
    assert big[:3] == [sm.schedule_root(g) for g in grids[:3]]  # one by one in Python
