"""keccak-256 of many equal-length messages in one numba call (private; used by
:mod:`twin.market.schedule_merkle`): a day schedule's Merkle tree is ~320 keccak
permutations, which one Python call each (pycryptodome) made ~0.5 ms a schedule; here a
batch of trees costs ~0.2 µs a permutation. ``cache=True``: compiled once per machine into
``__pycache__`` (about 2 s cold). Messages are little-endian 64-bit lanes, as keccak reads
them; the output is the 4 lanes of each digest."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["keccak_lanes", "leaf_lanes"]

_RC = np.array([
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
], dtype=np.uint64)
_PAD_END = np.uint64(0x8000000000000000)
_RATE = 17  # lanes of keccak-256's 136-byte rate


_U1 = np.uint64(1)
_U63 = np.uint64(63)


@nb.njit(cache=True, nogil=True)
def _permute(a: np.ndarray, rc: np.ndarray) -> None:
    """keccak-f[1600] on the 25 lanes of ``a`` (unrolled: lanes in locals)."""
    a0 = a[0]
    a1 = a[1]
    a2 = a[2]
    a3 = a[3]
    a4 = a[4]
    a5 = a[5]
    a6 = a[6]
    a7 = a[7]
    a8 = a[8]
    a9 = a[9]
    a10 = a[10]
    a11 = a[11]
    a12 = a[12]
    a13 = a[13]
    a14 = a[14]
    a15 = a[15]
    a16 = a[16]
    a17 = a[17]
    a18 = a[18]
    a19 = a[19]
    a20 = a[20]
    a21 = a[21]
    a22 = a[22]
    a23 = a[23]
    a24 = a[24]
    for rnd in range(24):
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ ((c1 << _U1) | (c1 >> _U63))
        d1 = c0 ^ ((c2 << _U1) | (c2 >> _U63))
        d2 = c1 ^ ((c3 << _U1) | (c3 >> _U63))
        d3 = c2 ^ ((c4 << _U1) | (c4 >> _U63))
        d4 = c3 ^ ((c0 << _U1) | (c0 >> _U63))
        b0 = (a0 ^ d0)
        t = (a1 ^ d1)
        b10 = (t << np.uint64(1)) | (t >> np.uint64(63))
        t = (a2 ^ d2)
        b20 = (t << np.uint64(62)) | (t >> np.uint64(2))
        t = (a3 ^ d3)
        b5 = (t << np.uint64(28)) | (t >> np.uint64(36))
        t = (a4 ^ d4)
        b15 = (t << np.uint64(27)) | (t >> np.uint64(37))
        t = (a5 ^ d0)
        b16 = (t << np.uint64(36)) | (t >> np.uint64(28))
        t = (a6 ^ d1)
        b1 = (t << np.uint64(44)) | (t >> np.uint64(20))
        t = (a7 ^ d2)
        b11 = (t << np.uint64(6)) | (t >> np.uint64(58))
        t = (a8 ^ d3)
        b21 = (t << np.uint64(55)) | (t >> np.uint64(9))
        t = (a9 ^ d4)
        b6 = (t << np.uint64(20)) | (t >> np.uint64(44))
        t = (a10 ^ d0)
        b7 = (t << np.uint64(3)) | (t >> np.uint64(61))
        t = (a11 ^ d1)
        b17 = (t << np.uint64(10)) | (t >> np.uint64(54))
        t = (a12 ^ d2)
        b2 = (t << np.uint64(43)) | (t >> np.uint64(21))
        t = (a13 ^ d3)
        b12 = (t << np.uint64(25)) | (t >> np.uint64(39))
        t = (a14 ^ d4)
        b22 = (t << np.uint64(39)) | (t >> np.uint64(25))
        t = (a15 ^ d0)
        b23 = (t << np.uint64(41)) | (t >> np.uint64(23))
        t = (a16 ^ d1)
        b8 = (t << np.uint64(45)) | (t >> np.uint64(19))
        t = (a17 ^ d2)
        b18 = (t << np.uint64(15)) | (t >> np.uint64(49))
        t = (a18 ^ d3)
        b3 = (t << np.uint64(21)) | (t >> np.uint64(43))
        t = (a19 ^ d4)
        b13 = (t << np.uint64(8)) | (t >> np.uint64(56))
        t = (a20 ^ d0)
        b14 = (t << np.uint64(18)) | (t >> np.uint64(46))
        t = (a21 ^ d1)
        b24 = (t << np.uint64(2)) | (t >> np.uint64(62))
        t = (a22 ^ d2)
        b9 = (t << np.uint64(61)) | (t >> np.uint64(3))
        t = (a23 ^ d3)
        b19 = (t << np.uint64(56)) | (t >> np.uint64(8))
        t = (a24 ^ d4)
        b4 = (t << np.uint64(14)) | (t >> np.uint64(50))
        a0 = b0 ^ (~b1 & b2)
        a1 = b1 ^ (~b2 & b3)
        a2 = b2 ^ (~b3 & b4)
        a3 = b3 ^ (~b4 & b0)
        a4 = b4 ^ (~b0 & b1)
        a5 = b5 ^ (~b6 & b7)
        a6 = b6 ^ (~b7 & b8)
        a7 = b7 ^ (~b8 & b9)
        a8 = b8 ^ (~b9 & b5)
        a9 = b9 ^ (~b5 & b6)
        a10 = b10 ^ (~b11 & b12)
        a11 = b11 ^ (~b12 & b13)
        a12 = b12 ^ (~b13 & b14)
        a13 = b13 ^ (~b14 & b10)
        a14 = b14 ^ (~b10 & b11)
        a15 = b15 ^ (~b16 & b17)
        a16 = b16 ^ (~b17 & b18)
        a17 = b17 ^ (~b18 & b19)
        a18 = b18 ^ (~b19 & b15)
        a19 = b19 ^ (~b15 & b16)
        a20 = b20 ^ (~b21 & b22)
        a21 = b21 ^ (~b22 & b23)
        a22 = b22 ^ (~b23 & b24)
        a23 = b23 ^ (~b24 & b20)
        a24 = b24 ^ (~b20 & b21)
        a0 ^= rc[rnd]
    a[0] = a0
    a[1] = a1
    a[2] = a2
    a[3] = a3
    a[4] = a4
    a[5] = a5
    a[6] = a6
    a[7] = a7
    a[8] = a8
    a[9] = a9
    a[10] = a10
    a[11] = a11
    a[12] = a12
    a[13] = a13
    a[14] = a14
    a[15] = a15
    a[16] = a16
    a[17] = a17
    a[18] = a18
    a[19] = a19
    a[20] = a20
    a[21] = a21
    a[22] = a22
    a[23] = a23
    a[24] = a24


@nb.njit(cache=True, nogil=True)
def _hash(msg: np.ndarray, a: np.ndarray, rc: np.ndarray) -> None:
    """keccak-256 of one message (``msg``: its lanes) into ``a`` (digest: a[0:4])."""
    m = msg.shape[0]
    one = np.uint64(1)
    a[:] = 0
    pos = 0
    while True:
        take = min(_RATE, m - pos)
        for j in range(take):
            a[j] ^= msg[pos + j]
        pos += take
        if take < _RATE:  # the last block, padded (keccak's 0x01 ... 0x80)
            a[take] ^= one
            a[_RATE - 1] ^= _PAD_END
            _permute(a, rc)
            return
        _permute(a, rc)
        if pos == m:  # a whole number of blocks: one block of padding
            a[0] ^= one
            a[_RATE - 1] ^= _PAD_END
            _permute(a, rc)
            return


@nb.njit(cache=True, nogil=True)
def _keccak_lanes(msg: np.ndarray, out: np.ndarray, rc: np.ndarray) -> None:
    a = np.empty(25, np.uint64)
    for i in range(msg.shape[0]):
        _hash(msg[i], a, rc)
        for j in range(4):
            out[i, j] = a[j]


@nb.njit(cache=True, nogil=True)
def _leaf_lanes(grids: np.ndarray, out: np.ndarray, rc: np.ndarray) -> None:
    """out[i, s] = keccak256(abi.encodePacked(uint64 s, int64 x 4 of grids[i, s])) as lanes:
    each 8-byte big-endian field read as a little-endian lane is its byte-swapped value."""
    n, per_day = grids.shape[0], grids.shape[1]
    a = np.empty(25, np.uint64)
    msg = np.empty(5, np.uint64)
    for i in range(n):
        for s in range(per_day):
            for c in range(5):
                u = np.uint64(s) if c == 0 else np.uint64(grids[i, s, c - 1])
                sw = np.uint64(0)
                for b in range(8):
                    sw = (sw << np.uint64(8)) | ((u >> np.uint64(8 * b)) & np.uint64(0xFF))
                msg[c] = sw
            _hash(msg, a, rc)
            for j in range(4):
                out[i, s, j] = a[j]


def keccak_lanes(msg: np.ndarray) -> np.ndarray:
    """keccak-256 of each row of ``msg`` (n x m uint64 little-endian lanes: messages of 8 m
    bytes) -> n x 4 uint64 (the digests' lanes; ``.view(np.uint8)`` gives their bytes)."""
    msg = np.ascontiguousarray(msg, dtype=np.uint64)
    out = np.empty((msg.shape[0], 4), np.uint64)
    _keccak_lanes(msg, out, _RC)
    return out


def leaf_lanes(grids: np.ndarray) -> np.ndarray:
    """The Merkle leaves of schedules (n x per_day x 4 int64) -> n x per_day x 4 uint64 lanes
    (:mod:`twin.market.schedule_merkle`'s leaf: keccak256(abi.encodePacked(uint64 slot, 4 x int64)))."""
    g = np.ascontiguousarray(grids, dtype=np.int64)
    out = np.empty((g.shape[0], g.shape[1], 4), np.uint64)
    _leaf_lanes(g, out, _RC)
    return out
