"""The Merkle tree of a device's day schedule (daily signing, :mod:`twin.market.signing_daily`):
the ``orders`` a device signs in its ``Schedule`` is this tree's root, so the chain keeps one
word per schedule and checks a relayed order against it with a proof of ``depth`` hashes
(``DailySchedules.sol``, the same hashes).

- leaf of slot ``s``: ``keccak256(abi.encode(uint64 s, int64 buyEnergy, int64 buyPrice,
  int64 sellEnergy, int64 sellPrice))``;
- the slots are padded with zero words (``bytes32(0)``) to ``2**depth`` leaves, ``depth`` the
  least with ``2**depth >= per_day`` (96 slots: 128 leaves, 7 proof hashes);
- a node is ``keccak256(left || right)``; a proof lists the siblings from the leaf up, the
  slot's bits (lowest first) saying whether the path is the right child.
"""

from __future__ import annotations

import numpy as np

from twin.market.signing import _keccak

__all__ = ["depth_of", "schedule_leaves", "schedule_levels", "schedule_proof", "schedule_root",
           "verify_proof"]

_ZERO = bytes(32)


def depth_of(per_day: int) -> int:
    """Proof length for ``per_day`` slots (at least 0)."""
    return max(int(per_day) - 1, 0).bit_length()


def _words(cols: np.ndarray) -> np.ndarray:
    """int64 columns -> rows of 32-byte big-endian two's complement words (n x 32*m uint8)."""
    n, m = cols.shape
    out = np.empty((n, m, 32), np.uint8)
    out[:, :, :24] = np.where(cols < 0, 255, 0).astype(np.uint8)[:, :, None]
    out[:, :, 24:] = cols.astype(">i8").view(np.uint8).reshape(n, m, 8)
    return out.reshape(n, m * 32)


def schedule_leaves(orders: np.ndarray) -> list[bytes]:
    """The leaf hash of every slot of a schedule (``per_day`` x 4 int64)."""
    grid = np.asarray(orders, dtype=np.int64)
    n = grid.shape[0]
    rows = _words(np.concatenate([np.arange(n, dtype=np.int64)[:, None], grid.reshape(n, 4)], axis=1))
    blob = rows.tobytes()
    return [_keccak(blob[k * 160:(k + 1) * 160]) for k in range(n)]


def schedule_levels(orders: np.ndarray) -> list[list[bytes]]:
    """Every level of the tree, leaves (padded) first, the root's level last."""
    level = schedule_leaves(orders)
    level += [_ZERO] * ((1 << depth_of(len(level))) - len(level))
    out = [level]
    while len(level) > 1:
        level = [_keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        out.append(level)
    return out


def schedule_root(orders: np.ndarray) -> bytes:
    """The schedule's Merkle root (what ``Schedule.orders`` is)."""
    return schedule_levels(orders)[-1][0]


def schedule_proof(levels: list[list[bytes]], slot: int) -> list[bytes]:
    """The siblings of ``slot``'s leaf, from the leaf up."""
    out = []
    for level in levels[:-1]:
        out.append(level[slot ^ 1])
        slot >>= 1
    return out


def verify_proof(leaf: bytes, slot: int, proof: list[bytes], root: bytes) -> bool:
    h = leaf
    for i, sib in enumerate(proof):
        h = _keccak(sib + h) if (slot >> i) & 1 else _keccak(h + sib)
    return h == root
