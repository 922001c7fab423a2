"""Transaction keys: every chain account of a run is a secp256k1 key made from the run's seed,
and every transaction is signed here and sent raw (``eth_sendRawTransaction``), so no
account on the node needs to be unlocked and any EVM JSON-RPC node will do.

Account ``i`` of a run with seed ``s`` has the private key
``keccak256("gridtwin account" || s || i) mod n`` (deterministic: the same run gets the same
addresses; a different seed gives different ones). One funded key (``--funder-key``, or the
well-known first development key of a local Anvil) pays the run's accounts their gas money.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import coincurve
import rlp
from eth_utils import keccak, to_checksum_address

__all__ = ["ANVIL_DEV_KEY", "DEV_MNEMONIC", "TxKey", "derive_keys", "dev_key", "sign_eip1559"]

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

#: Account 0 of every Anvil/Hardhat dev node (mnemonic "test test ... junk"): public knowledge,
#: only ever used to fund a run on a local development node the twin started itself.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#: The standard development mnemonic of Anvil and Hardhat's node.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


@dataclass(frozen=True, slots=True)
class TxKey:
    """One account's private key and address."""

    secret: bytes
    address: str

    @classmethod
    def from_hex(cls, key_hex: str) -> TxKey:
        raw = key_hex[2:] if key_hex.startswith(("0x", "0X")) else key_hex
        try:
            secret = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("a private key must be 32 bytes of hex (64 hex digits)") from None
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < _N:
            raise ValueError("a private key must be 32 bytes of hex in 1..n-1 of secp256k1")
        pub = coincurve.PublicKey.from_secret(secret).format(compressed=False)[1:]
        return cls(secret=secret, address=to_checksum_address(keccak(pub)[-20:]))


def derive_keys(seed: int | str, n: int) -> list[TxKey]:
    """The ``n`` account keys of a run with this seed (see the module docstring)."""
    out = []
    for i in range(n):
        k = int.from_bytes(keccak(b"gridtwin account" + str(seed).encode() + b"/" + str(i).encode()),
                           "big") % (_N - 1) + 1
        out.append(TxKey.from_hex(k.to_bytes(32, "big").hex()))
    return out


def _int(x: int) -> bytes:
    return b"" if x == 0 else x.to_bytes((x.bit_length() + 7) // 8, "big")


def sign_eip1559(key: TxKey, *, chain_id: int, nonce: int, max_priority_fee: int, max_fee: int,
                 gas: int, to: str | None, value: int, data: bytes) -> tuple[bytes, str]:
    """A signed EIP-1559 (type 2) transaction: ``(raw bytes, tx hash hex)``."""
    fields = [_int(chain_id), _int(nonce), _int(max_priority_fee), _int(max_fee), _int(gas),
              bytes.fromhex(to[2:]) if to else b"", _int(value), data, []]
    payload = b"\x02" + rlp.encode(fields)
    sig = coincurve.PrivateKey(key.secret).sign_recoverable(keccak(payload), hasher=None)
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    raw = b"\x02" + rlp.encode([*fields, _int(v), _int(r), _int(s)])
    return raw, "0x" + keccak(raw).hex()


@functools.cache
def dev_key(index: int) -> TxKey:
    """Key of a dev node's ``index``-th default account (BIP-44 path of :data:`DEV_MNEMONIC`)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return TxKey.from_hex(acct.key.hex())
