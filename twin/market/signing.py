"""Device identity: EIP-712 signed orders and meter readings.

Each registered device may hold its own secp256k1 key (the DSO binds its address with
``set_device_signer``). The device signs its orders and meter readings off-chain; a relayer
(normally the market operator) submits them in batches; the contract
(``EnergyMarket.placeSignedOrders`` / ``settleSigned``) and the reference ledger recover the
signer and compare it with the registered key, so every order keeps its device's identity
on chain without one transaction per device.

Typed data (the contract's ``ORDER_TYPEHASH`` / ``READING_TYPEHASH``)::

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)
        name = "gridtwin EnergyMarket", version = "1", salt: random per deployment
    Order(uint64 device,uint64 interval,uint8 side,int256 energyWh,int256 price,uint64 nonce)
    MeterReading(uint64 device,uint64 interval,int256 meteredWh)
    CancelOrders(uint64 device,uint64 interval,uint64 nonce)

The salt makes every deployment's domain its own: a signature from one run (same seed, same
keys, same chain id and contract address) is worthless in the next.

Replay protection: an order's ``nonce`` must exceed every earlier nonce of that device in
that interval (a signed ``CancelOrders`` raises that floor: the device key voids its orders
not yet relayed) (the contract keeps it in the same storage slot as the device's usage, so it
costs no extra storage write); a reading names its interval, which settles only once.
Signatures use low ``s`` (EIP-2), ``v`` in {27, 28}. Hashing and signing use coincurve
(libsecp256k1): ~0.1 ms an order, so signing is no bottleneck at thousands of orders/s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from coincurve._libsecp256k1 import ffi as _SFFI
from coincurve._libsecp256k1 import lib as _SLIB
from coincurve.context import GLOBAL_CONTEXT as _SCTX
from Crypto.Hash.keccak import _raw_keccak_lib  # type: ignore[attr-defined]
from Crypto.Util import _raw_api
from eth_utils import keccak

from twin.market.errors import MarketError
from twin.market.types import OrderIntent, Side

__all__ = [
    "ZERO_ADDRESS",
    "DeviceKey",
    "Domain",
    "SignedOrder",
    "SignedReading",
    "order_struct_hash",
    "reading_struct_hash",
    "recover",
]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,"
    "bytes32 salt)"
)
_CANCEL_TYPEHASH = keccak(text="CancelOrders(uint64 device,uint64 interval,uint64 nonce)")
_ORDER_TYPEHASH = keccak(
    text="Order(uint64 device,uint64 interval,uint8 side,int256 energyWh,int256 price,uint64 nonce)"
)
_READING_TYPEHASH = keccak(text="MeterReading(uint64 device,uint64 interval,int256 meteredWh)")
_NAME_HASH = keccak(text="gridtwin EnergyMarket")
_VERSION_HASH = keccak(text="1")


_KFFI: Any = _raw_api.ffi  # pycryptodome's cffi handle (untyped)
_KLIB: Any = _raw_keccak_lib
_KSTATE = threading.local()  # one keccak state per thread, reset per hash (cffi drops the GIL)


def _keccak_state() -> Any:
    pp = _KFFI.new("void **")
    if _KLIB.keccak_init(pp, 64, 24):  # capacity 64 bytes (keccak-256), 24 rounds
        raise RuntimeError("keccak_init failed")
    st = _KSTATE.st = (_KFFI.gc(pp[0], _KLIB.keccak_destroy), _KFFI.new("uint8_t[32]"))
    return st


def _scratch() -> tuple[Any, Any, Any, Any, Any]:
    """This thread's libsecp256k1 buffers: recoverable signature, public key, 65 bytes out,
    its length, recovery id (allocated once: ``ffi.new`` costs more than the hash)."""
    try:
        return _KSTATE.ec  # type: ignore[no-any-return]
    except AttributeError:
        ec = _KSTATE.ec = (_SFFI.new("secp256k1_ecdsa_recoverable_signature *"),
                           _SFFI.new("secp256k1_pubkey *"), _SFFI.new("unsigned char[65]"),
                           _SFFI.new("size_t *"), _SFFI.new("int *"))
        return ec


def _keccak(data: bytes) -> bytes:
    """keccak-256 straight from pycryptodome's C core (what ``eth_utils.keccak`` calls,
    without its per-call Python layers and allocations: the hot path hashes every order and
    reading twice). One state per thread, reset before each hash."""
    try:
        st, out = _KSTATE.st
    except AttributeError:
        st, out = _keccak_state()
    _KLIB.keccak_reset(st)
    _KLIB.keccak_absorb(st, data, len(data))
    _KLIB.keccak_digest(st, out, 32, 0x01)
    return _KFFI.buffer(out)[:]


#: checksummed addresses by their 20 bytes: a run recovers the same few thousand signers
#: every interval, and EIP-55 checksumming costs a keccak and string work each time
_CHECKSUMMED: dict[bytes, str] = {}


def _eip55(raw: bytes) -> str:
    """EIP-55 checksummed hex of 20 address bytes (``eth_utils.to_checksum_address``)."""
    hexa = raw.hex()
    h = _keccak(hexa.encode()).hex()
    return "0x" + "".join(c.upper() if h[k] >= "8" else c for k, c in enumerate(hexa))


def _checksum(raw: bytes) -> str:
    out = _CHECKSUMMED.get(raw)
    if out is None:
        if len(_CHECKSUMMED) >= 1 << 20:
            _CHECKSUMMED.clear()
        out = _CHECKSUMMED[raw] = _eip55(raw)
    return out


def _u(x: int) -> bytes:
    if not 0 <= x < 2**256:
        raise ValueError(f"{x} does not fit uint256")
    return x.to_bytes(32, "big")


def _i(x: int) -> bytes:
    if not -(2**255) <= x < 2**255:
        raise ValueError(f"{x} does not fit int256")
    return (x % 2**256).to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class Domain:
    """EIP-712 domain of one market deployment (chain id, market contract address, salt)."""

    chain_id: int
    verifying_contract: str
    salt: bytes = bytes(32)
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sep = keccak(
            _DOMAIN_TYPEHASH
            + _NAME_HASH
            + _VERSION_HASH
            + _u(self.chain_id)
            + bytes(12)
            + bytes.fromhex(self.verifying_contract[2:])
            + self.salt
        )
        if len(self.salt) != 32:
            raise ValueError(f"an EIP-712 salt is 32 bytes, got {len(self.salt)}")
        object.__setattr__(self, "separator", sep)

    def digest(self, struct_hash: bytes) -> bytes:
        return _keccak(b"\x19\x01" + self.separator + struct_hash)


def _fits64(name: str, x: int) -> None:
    if not 0 <= x < 2**64:
        raise ValueError(f"{name} {x} does not fit uint64")


def _checked_order_struct_hash(intent: OrderIntent, nonce: int) -> bytes:
    _fits64("device_id", intent.device_id)
    _fits64("interval", intent.interval)
    _fits64("nonce", nonce)
    return _keccak(
        _ORDER_TYPEHASH
        + _u(intent.device_id)
        + _u(intent.interval)
        + _u(int(Side(intent.side)))
        + _i(intent.energy_wh)
        + _i(intent.price_per_mwh)
        + _u(nonce)
    )


_SIDE_WORD = {Side.BUY: bytes(32), Side.SELL: (1).to_bytes(32, "big")}
_U64 = 1 << 64
_I256 = 1 << 255


def order_struct_hash(intent: OrderIntent, nonce: int) -> bytes:
    """EIP-712 ``hashStruct(Order)``; a field out of its type's range raises ``ValueError``
    naming it. The common case (int fields in range, a ``Side``) in one join."""
    d, k, e, p = intent.device_id, intent.interval, intent.energy_wh, intent.price_per_mwh
    side = _SIDE_WORD.get(intent.side) if type(intent.side) is Side else None
    if (side is None or type(d) is not int or type(k) is not int or type(nonce) is not int
            or type(e) is not int or type(p) is not int
            or not (0 <= d < _U64 and 0 <= k < _U64 and 0 <= nonce < _U64
                    and -_I256 <= e < _I256 and -_I256 <= p < _I256)):
        return _checked_order_struct_hash(intent, nonce)  # the general path and its errors
    return _keccak(b"".join((
        _ORDER_TYPEHASH, d.to_bytes(32, "big"), k.to_bytes(32, "big"), side,
        e.to_bytes(32, "big", signed=True), p.to_bytes(32, "big", signed=True),
        nonce.to_bytes(32, "big"))))


def reading_struct_hash(device_id: int, interval: int, metered_wh: int) -> bytes:
    """EIP-712 ``hashStruct(MeterReading)``; out of range raises ``ValueError``."""
    if (type(device_id) is int and type(interval) is int and type(metered_wh) is int
            and 0 <= device_id < _U64 and 0 <= interval < _U64 and -_I256 <= metered_wh < _I256):
        return _keccak(b"".join((
            _READING_TYPEHASH, device_id.to_bytes(32, "big"), interval.to_bytes(32, "big"),
            metered_wh.to_bytes(32, "big", signed=True))))
    _fits64("device_id", device_id)
    _fits64("interval", interval)
    return _keccak(_READING_TYPEHASH + _u(device_id) + _u(interval) + _i(metered_wh))


def cancel_struct_hash(device_id: int, interval: int, nonce: int) -> bytes:
    _fits64("device_id", device_id)
    _fits64("interval", interval)
    _fits64("nonce", nonce)
    return keccak(_CANCEL_TYPEHASH + _u(device_id) + _u(interval) + _u(nonce))


@dataclass(frozen=True, slots=True)
class SignedCancel:
    """A device key's cancellation of its orders of ``interval`` with nonces up to ``nonce``."""

    device_id: int
    interval: int
    nonce: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedOrder:
    """An order intent with its nonce and the device key's 65-byte signature (r, s, v)."""

    intent: OrderIntent
    nonce: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    """A signed order of a relayed batch that failed its checks and was skipped: its
    position in the batch, the order and the error it alone would raise."""

    index: int
    order: SignedOrder
    error: MarketError


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A meter reading (consumption positive) signed by the device key."""

    device_id: int
    interval: int
    metered_wh: int
    signature: bytes


#: checksummed signer addresses by the recovered 64-byte public key (x, y): the signers of a
#: run sign every interval, and keccak + EIP-55 of the key cost more than the lookup
_ADDRESS_OF_PUB: dict[bytes, str] = {}
_HALF_N = _N // 2


#: raw 20-byte signer addresses by the recovered public key (the batch path's cache)
_RAW_OF_PUB: dict[bytes, bytes] = {}
_ZERO20 = bytes(20)


def _recover_pub(digest: bytes, signature: bytes) -> bytes | None:
    """The signer's 64-byte public key (x, y), None for a malformed or high-s signature."""
    if len(signature) != 65 or len(digest) != 32:
        return None
    v = signature[64]
    if (v != 27 and v != 28) or int.from_bytes(signature[32:64], "big") > _HALF_N:
        return None
    rsig, pub, out, outlen, _ = _scratch()
    if not _SLIB.secp256k1_ecdsa_recoverable_signature_parse_compact(
            _SCTX.ctx, rsig, signature[:64], v - 27):
        return None  # r or s not below the group order
    if not _SLIB.secp256k1_ecdsa_recover(_SCTX.ctx, pub, rsig, digest):
        return None
    outlen[0] = 65
    _SLIB.secp256k1_ec_pubkey_serialize(_SCTX.ctx, out, outlen, pub, _SLIB.SECP256K1_EC_UNCOMPRESSED)
    return _SFFI.buffer(out)[1:65]  # type: ignore[no-any-return]


def _recover_raw(digest: bytes, signature: bytes) -> bytes:
    """:func:`recover` as the 20 address bytes (20 zero bytes when invalid)."""
    xy = _recover_pub(digest, signature)
    if xy is None:
        return _ZERO20
    raw = _RAW_OF_PUB.get(xy)
    if raw is None:
        if len(_RAW_OF_PUB) >= 1 << 17:
            _RAW_OF_PUB.clear()
        raw = _RAW_OF_PUB[xy] = _keccak(xy)[12:]
    return raw


def recover(digest: bytes, signature: bytes) -> str:
    """Signer address of ``digest`` (the zero address for a malformed or high-s signature),
    exactly as the contract's ``_recover``. libsecp256k1 through coincurve's cffi handle,
    without its per-call Python objects."""
    xy = _recover_pub(digest, signature)
    if xy is None:
        return ZERO_ADDRESS
    addr = _ADDRESS_OF_PUB.get(xy)
    if addr is None:
        if len(_ADDRESS_OF_PUB) >= 1 << 17:
            _ADDRESS_OF_PUB.clear()
        addr = _ADDRESS_OF_PUB[xy] = _checksum(_keccak(xy)[12:])
    return addr


def _sign_with_secret(secret: bytes, digest: bytes) -> bytes:
    """65-byte r, s (low s), v in {27, 28} of ``digest`` by a 32-byte secret key:
    libsecp256k1's RFC 6979 signature (what ``coincurve.PrivateKey.sign_recoverable`` gives)."""
    if len(digest) != 32:
        raise ValueError(f"a digest is 32 bytes, got {len(digest)}")
    rsig, _, out, _, recid = _scratch()
    if not _SLIB.secp256k1_ecdsa_sign_recoverable(
            _SCTX.ctx, rsig, digest, secret, _SFFI.NULL, _SFFI.NULL):
        raise ValueError("libsecp256k1 could not sign (invalid key)")
    _SLIB.secp256k1_ecdsa_recoverable_signature_serialize_compact(_SCTX.ctx, out, recid, rsig)
    out[64] = recid[0] + 27
    return _SFFI.buffer(out)[:]  # type: ignore[no-any-return]


def _address_of_secret(secret: bytes) -> str:
    """Checksummed address of a 32-byte secret key (libsecp256k1, no Python key objects)."""
    _, pub, out, outlen, _ = _scratch()
    if not _SLIB.secp256k1_ec_pubkey_create(_SCTX.ctx, pub, secret):
        raise ValueError("invalid secp256k1 secret key")
    outlen[0] = 65
    _SLIB.secp256k1_ec_pubkey_serialize(_SCTX.ctx, out, outlen, pub, _SLIB.SECP256K1_EC_UNCOMPRESSED)
    return _checksum(_keccak(_SFFI.buffer(out)[1:65])[12:])


class DeviceKey:
    """A device's signing key; ``address`` is what the DSO registers."""

    __slots__ = ("_secret", "address")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a device key is 32 bytes")
        self._secret: bytes = bytes(secret)
        self.address: str = _address_of_secret(self._secret)  # raises for an invalid key

    @classmethod
    def from_seed(cls, seed: int | str) -> DeviceKey:
        """A deterministic key (tests, simulated devices): keccak of the seed."""
        k = cls(_keccak(f"gridtwin device key {seed}".encode()))
        return k

    def __repr__(self) -> str:
        return f"DeviceKey({self.address})"

    def sign_digest(self, digest: bytes) -> bytes:
        """65-byte r, s (low s), v in {27, 28}: libsecp256k1's RFC 6979 signature, what
        ``coincurve.PrivateKey.sign_recoverable`` gives, without its per-call Python objects."""
        return _sign_with_secret(self._secret, digest)

    def sign_order(self, intent: OrderIntent, *, nonce: int, domain: Domain) -> SignedOrder:
        digest = domain.digest(order_struct_hash(intent, nonce))
        return SignedOrder(intent=intent, nonce=nonce, signature=self.sign_digest(digest))

    def sign_cancel(self, *, device_id: int, interval: int, nonce: int,
                    domain: Domain) -> SignedCancel:
        digest = domain.digest(cancel_struct_hash(device_id, interval, nonce))
        return SignedCancel(device_id=device_id, interval=interval, nonce=nonce,
                            signature=self.sign_digest(digest))

    def sign_reading(
        self, *, device_id: int, interval: int, metered_wh: int, domain: Domain
    ) -> SignedReading:
        digest = domain.digest(reading_struct_hash(device_id, interval, metered_wh))
        return SignedReading(
            device_id=device_id,
            interval=interval,
            metered_wh=metered_wh,
            signature=self.sign_digest(digest),
        )


def order_signer(signed: SignedOrder, domain: Domain) -> str:
    """Recovered signer of a signed order (zero address if invalid)."""
    try:
        digest = domain.digest(order_struct_hash(signed.intent, signed.nonce))
    except ValueError:
        return ZERO_ADDRESS
    return recover(digest, signed.signature)


def reading_signer(reading: SignedReading, domain: Domain) -> str:
    try:
        digest = domain.digest(
            reading_struct_hash(reading.device_id, reading.interval, reading.metered_wh)
        )
    except ValueError:
        return ZERO_ADDRESS
    return recover(digest, reading.signature)


def cancel_signer(cancel: SignedCancel, domain: Domain) -> str:
    try:
        digest = domain.digest(cancel_struct_hash(cancel.device_id, cancel.interval, cancel.nonce))
    except ValueError:
        return ZERO_ADDRESS
    return recover(digest, cancel.signature)


__all__ += ["Rejection", "SignedCancel", "cancel_signer", "cancel_struct_hash", "order_signer", "reading_signer"]
