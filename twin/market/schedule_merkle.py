"""The Merkle tree of a device's day schedule (daily signing, :mod:`twin.market.signing_daily`):
the ``orders`` a device signs in its ``Schedule`` is this tree's root, so the chain keeps one
word per schedule and checks a relayed order against it with a proof of ``depth`` hashes
(``DailySchedules.sol``, the same hashes).

- leaf of slot ``s``: ``keccak256(abi.encodePacked(uint64 s, int64 buyEnergy, int64 buyPrice,
  int64 sellEnergy, int64 sellPrice))`` (40 bytes: one keccak block);
- the slots are padded with zero words (``bytes32(0)``) to ``2**depth`` leaves, ``depth`` the
  least with ``2**depth >= per_day`` (96 slots: 128 leaves, 7 proof hashes);
- a node is ``keccak256(left || right)``; a proof lists the siblings from the leaf up, the
  slot's bits (lowest first) saying whether the path is the right child.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NUMBA_FROM_SLOTS", "depth_of", "schedule_levels", "schedule_proof", "schedule_root",
           "schedule_roots", "schedules_levels", "tree_lanes"]

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


#: schedules (of 96 slots) in one batch from which the trees are hashed by the numba kernel
#: (its import and, on a fresh clone, its compile pay only for a big batch: a town day's
#: ~10,000 schedules; a few dozen hash in ~0.5 ms each one keccak call per node)
NUMBA_FROM_SLOTS = 64 * 96


def _keccak_py(msg: np.ndarray) -> np.ndarray:
    """:func:`twin.market._keccak_kernel.keccak_lanes`, one pycryptodome call a row."""
    from twin.market.signing import _keccak as keccak

    rows = np.ascontiguousarray(msg, dtype=np.uint64)
    out = b"".join(keccak(r.tobytes()) for r in rows)
    return np.frombuffer(out, dtype="<u8").reshape(len(rows), 4)


def _leaves_py(g: np.ndarray) -> np.ndarray:
    n, per_day = g.shape[0], g.shape[1]
    slots = np.broadcast_to(np.arange(per_day, dtype=np.int64)[None, :, None], (n, per_day, 1))
    cols = np.concatenate([slots, g.reshape(n, per_day, 4)], axis=2).reshape(n * per_day, 5)
    return _keccak_py(cols.astype(">i8").view("<u8")).reshape(n, per_day, 4)


def _kernels(n_slots: int) -> tuple[Any, Any]:
    """(hash of lane rows, leaves of grids): numba for a big batch, else pycryptodome."""
    if n_slots < NUMBA_FROM_SLOTS:
        return _keccak_py, _leaves_py
    from twin.market._keccak_kernel import keccak_lanes, leaf_lanes  # numba: big batches only

    return keccak_lanes, leaf_lanes


def tree_lanes(grids: np.ndarray) -> list[np.ndarray]:
    """Every level of the trees of ``grids`` (n x per_day x 4 int64), a big batch in numba: level
    ``i`` is n x (2**depth >> i) x 4 uint64 (each node's 32 bytes as little-endian lanes)."""
    g = np.asarray(grids, dtype=np.int64)
    n, per_day = g.shape[0], g.shape[1]
    keccak, leaves_of = _kernels(n * per_day)
    leaves = leaves_of(g.reshape(n, per_day, 4))
    width = 1 << depth_of(per_day)
    level = np.zeros((n, width, 4), np.uint64)
    level[:, :per_day] = leaves
    out = [level]
    live, zero = per_day, np.zeros(4, np.uint64)  # nodes over real slots; the padding's node
    while width > 1:
        width, live = width // 2, (live + 1) // 2
        nxt = np.empty((n, width, 4), np.uint64)
        nxt[:, :live] = keccak(level[:, :2 * live].reshape(n * live, 8)).reshape(n, live, 4)
        zero = keccak(np.concatenate([zero, zero])[None])[0]  # the zero subtree one up
        nxt[:, live:] = zero
        out.append(level := nxt)
    return out


def schedule_roots(grids: np.ndarray) -> list[bytes]:
    """The Merkle root of each schedule of ``grids`` (n x per_day x 4 int64)."""
    top = tree_lanes(grids)[-1]
    return [bytes(r) for r in top.reshape(-1, 4).view(np.uint8).reshape(-1, 32)]


def schedule_levels(orders: np.ndarray) -> list[list[bytes]]:
    """Every level of the tree, leaves (padded) first, the root's level last."""
    return schedules_levels(np.asarray(orders, dtype=np.int64)[None])[0]


def schedules_levels(grids: np.ndarray) -> list[list[list[bytes]]]:
    """:func:`schedule_levels` of each schedule of ``grids`` (n x per_day x 4 int64), the
    trees hashed in one batch."""
    lanes = tree_lanes(grids)
    return [[[bytes(r) for r in lv[k].view(np.uint8).reshape(-1, 32)] for lv in lanes]
            for k in range(len(lanes[0]))]


def schedule_root(orders: np.ndarray) -> bytes:
    """The schedule's Merkle root (what ``Schedule.orders`` is)."""
    return schedule_roots(np.asarray(orders, dtype=np.int64)[None])[0]


def schedule_proof(levels: list[list[bytes]], slot: int) -> list[bytes]:
    """The siblings of ``slot``'s leaf, from the leaf up."""
    out = []
    for level in levels[:-1]:
        out.append(level[slot ^ 1])
        slot >>= 1
    return out

