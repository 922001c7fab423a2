"""Device signatures in batches: the same EIP-712 messages, bytes and checks as
:mod:`twin.market.signing`, for a whole interval's orders or readings at once.

The struct words of a batch are encoded with numpy in one go (int64-sized fields; any other
field takes the one-message path with its own checks and errors), and hashing, signing and
recovery are shared between this process and the signature workers
(:mod:`twin.market.sign_pool`) when a batch is large: a town interval signs and recovers
~22,000 messages, which spread over the machine's cores. Nothing about the protocol changes:
each message is still signed by its own device key and recovered against the registered
signer; the workers only hold what a batch sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from twin.market.signing import (
    _ORDER_TYPEHASH,
    _READING_TYPEHASH,
    ZERO_ADDRESS,
    Domain,
    SignedOrder,
    SignedReading,
    _checksum,
    order_signer,
    reading_signer,
)
from twin.market.types import Side

__all__ = [
    "digests_of",
    "order_rows",
    "reading_rows",
    "recover_local",
    "recover_orders",
    "recover_readings",
    "recover_rows",
    "sign_digests_local",
    "sign_rows",
]

_I63 = 1 << 63
_Signed = TypeVar("_Signed", SignedOrder, SignedReading)
_ORDER_LEN = 32 * 7
_READING_LEN = 32 * 4


def _encode(typehash: bytes, cols: np.ndarray) -> bytes:
    """Rows of ``typehash || word(c0) || word(c1) ...`` (32-byte big-endian two's complement
    words of int64 columns), concatenated."""
    n, m = cols.shape
    out = np.empty((n, 1 + m, 32), dtype=np.uint8)
    out[:, 0, :] = np.frombuffer(typehash, dtype=np.uint8)
    out[:, 1:, :24] = np.where(cols < 0, 255, 0).astype(np.uint8)[:, :, None]
    out[:, 1:, 24:] = cols.astype(">i8").view(np.uint8).reshape(n, m, 8)
    return out.tobytes()


def _fast_int(x: object, lo: int) -> bool:
    return type(x) is int and lo <= x < _I63  # type: ignore[operator]


def order_rows(intents: Sequence[object], nonces: Sequence[int]) -> tuple[list[int], bytes]:
    """Encoded ``Order`` structs of the fast rows (ints in int64 range, a ``Side``) and their
    positions; the other rows take :func:`twin.market.signing.order_struct_hash`'s path."""
    idx: list[int] = []
    vals: list[tuple[int, int, int, int, int, int]] = []
    for k, (it, n) in enumerate(zip(intents, nonces, strict=True)):
        d, i, s, e, p = (it.device_id, it.interval, it.side,  # type: ignore[attr-defined]
                         it.energy_wh, it.price_per_mwh)  # type: ignore[attr-defined]
        if (type(s) is Side and _fast_int(d, 0) and _fast_int(i, 0) and _fast_int(n, 0)
                and _fast_int(e, -_I63) and _fast_int(p, -_I63)):
            idx.append(k)
            vals.append((d, i, int(s), e, p, n))
    cols = np.array(vals, dtype=np.int64).reshape(len(vals), 6)
    return idx, _encode(_ORDER_TYPEHASH, cols)


def reading_rows(readings: Sequence[tuple[int, int, int]]) -> tuple[list[int], bytes]:
    """Encoded ``MeterReading`` structs of (device, interval, metered Wh) rows in range."""
    idx = [k for k, (d, i, w) in enumerate(readings)
           if _fast_int(d, 0) and _fast_int(i, 0) and _fast_int(w, -_I63)]
    cols = np.array([readings[k] for k in idx], dtype=np.int64).reshape(len(idx), 3)
    return idx, _encode(_READING_TYPEHASH, cols)


# --- the per-process kernels (also run by the workers) ---------------------------------
def digests_of(separator: bytes, rows: bytes, row_len: int) -> list[bytes]:
    """EIP-712 digests ``keccak(0x1901 || separator || keccak(row))`` of encoded rows."""
    from twin.market.signing import _keccak

    pre = b"\x19\x01" + separator
    return [_keccak(pre + _keccak(rows[o:o + row_len])) for o in range(0, len(rows), row_len)]


def sign_digests_local(secrets: bytes, digests: Sequence[bytes]) -> bytes:
    """65-byte signatures of each digest by the 32-byte secret at the same position."""
    from twin.market.signing import _sign_with_secret

    return b"".join(_sign_with_secret(secrets[32 * k:32 * k + 32], d) for k, d in enumerate(digests))


def recover_local(digests: Sequence[bytes], sigs: bytes) -> bytes:
    """20-byte signer address of each (digest, 65-byte signature); zeros when invalid."""
    from twin.market.signing import _recover_raw

    return b"".join(_recover_raw(d, sigs[65 * k:65 * k + 65]) for k, d in enumerate(digests))


# --- batches, spread over the workers when large ---------------------------------------
def sign_rows(domain: Domain, rows: bytes, row_len: int, secrets: bytes) -> list[bytes]:
    """Signatures (65 bytes each) of encoded rows, each by its own secret."""
    from twin.market.sign_pool import run_batch

    blob = run_batch("sign", domain.separator, rows, row_len, secrets)
    return [blob[o:o + 65] for o in range(0, len(blob), 65)]


def recover_rows(domain: Domain, rows: bytes, row_len: int, sigs: bytes) -> list[str]:
    """Checksummed signer (zero address if invalid) of each encoded row and signature."""
    from twin.market.sign_pool import run_batch

    blob = run_batch("recover", domain.separator, rows, row_len, sigs)
    out = []
    for o in range(0, len(blob), 20):
        raw = blob[o:o + 20]
        out.append(ZERO_ADDRESS if raw == bytes(20) else _checksum(raw))
    return out


def _sig_blob(sigs: Sequence[bytes]) -> bytes:
    """Signatures joined, 65 bytes each; a malformed one (not 65 bytes) as 65 zero bytes,
    which recovers to the zero address as it does alone (``v`` = 0)."""
    return b"".join(s if len(s) == 65 else bytes(65) for s in sigs)


def _recover_batch(items: Sequence[_Signed], domain: Domain, idx: list[int], rows: bytes,
                   row_len: int, one: Callable[[_Signed, Domain], str]) -> list[str]:
    """Signers of a batch: the encoded fast rows (at positions ``idx``) recovered together,
    any other item by ``one`` (its one-message path, with its own checks and errors)."""
    out = [ZERO_ADDRESS] * len(items)
    if len(idx) < len(items):
        fast = set(idx)
        for k, item in enumerate(items):
            if k not in fast:
                out[k] = one(item, domain)
    got = recover_rows(domain, rows, row_len, _sig_blob([items[k].signature for k in idx]))
    for k, a in zip(idx, got, strict=True):
        out[k] = a
    return out


def recover_orders(signed: Sequence[SignedOrder], domain: Domain) -> list[str]:
    """:func:`twin.market.signing.order_signer` of every order of a batch."""
    idx, rows = order_rows([s.intent for s in signed], [s.nonce for s in signed])
    return _recover_batch(signed, domain, idx, rows, _ORDER_LEN, order_signer)


def recover_readings(readings: Sequence[SignedReading], domain: Domain) -> list[str]:
    """:func:`twin.market.signing.reading_signer` of every reading of a batch."""
    idx, rows = reading_rows([(r.device_id, r.interval, r.metered_wh) for r in readings])
    return _recover_batch(readings, domain, idx, rows, _READING_LEN, reading_signer)


ORDER_LEN, READING_LEN = _ORDER_LEN, _READING_LEN
__all__ += ["ORDER_LEN", "READING_LEN"]
