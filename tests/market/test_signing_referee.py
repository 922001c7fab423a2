"""The signing hot path (libsecp256k1 straight through cffi, keccak from pycryptodome's C
core, pre-hashed EIP-712 types) gives byte for byte what eth_account
(and eth_keys' pure-Python backend) gives: the same digests,
the same deterministic (RFC 6979) signatures and the same recovered signers; malformed
signatures recover the zero address as the contract's ``_recover`` does."""

from __future__ import annotations

import random

from eth_account import Account
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend

from twin.market.signing import (
    ZERO_ADDRESS,
    DeviceKey,
    Domain,
    cancel_signer,
    order_signer,
    reading_signer,
    recover,
)
from twin.market.types import OrderIntent, Side

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
    {"name": "salt", "type": "bytes32"},
]
_TYPES = {
    "Order": [{"name": "device", "type": "uint64"}, {"name": "interval", "type": "uint64"},
              {"name": "side", "type": "uint8"}, {"name": "energyWh", "type": "int256"},
              {"name": "price", "type": "int256"}, {"name": "nonce", "type": "uint64"}],
    "MeterReading": [{"name": "device", "type": "uint64"}, {"name": "interval", "type": "uint64"},
                     {"name": "meteredWh", "type": "int256"}],
    "CancelOrders": [{"name": "device", "type": "uint64"}, {"name": "interval", "type": "uint64"},
                     {"name": "nonce", "type": "uint64"}],
}


def _typed(dom: Domain, kind: str, msg: dict[str, int]) -> dict[str, object]:
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, kind: _TYPES[kind]},
        "primaryType": kind,
        "domain": {"name": "gridtwin EnergyMarket", "version": "1", "chainId": dom.chain_id,
                   "verifyingContract": dom.verifying_contract, "salt": dom.salt},
        "message": msg,
    }


def test_signatures_and_signers_equal_eth_account() -> None:
    rng = random.Random(24)
    for trial in range(40):
        dom = Domain(chain_id=rng.randrange(1, 2**40),
                     verifying_contract=Account.create().address, salt=rng.randbytes(32))
        key = DeviceKey(rng.randbytes(32))
        secret = key._secret
        assert Account.from_key(secret).address == key.address
        dev, k = rng.randrange(2**64), rng.randrange(2**64)
        nonce, wh = rng.randrange(1, 2**64), rng.randrange(-(2**255), 2**255)
        if trial % 3 == 0:
            it = OrderIntent(device_id=dev, interval=k, side=rng.choice([Side.BUY, Side.SELL]),
                             energy_wh=rng.randrange(1, 2**200), price_per_mwh=rng.randrange(-(2**200), 2**200))
            so = key.sign_order(it, nonce=nonce, domain=dom)
            ref = Account.sign_typed_data(secret, full_message=_typed(dom, "Order", {
                "device": dev, "interval": k, "side": int(it.side), "energyWh": it.energy_wh,
                "price": it.price_per_mwh, "nonce": nonce}))
            sig, signer = so.signature, order_signer(so, dom)
        elif trial % 3 == 1:
            sr = key.sign_reading(device_id=dev, interval=k, metered_wh=wh, domain=dom)
            ref = Account.sign_typed_data(secret, full_message=_typed(
                dom, "MeterReading", {"device": dev, "interval": k, "meteredWh": wh}))
            sig, signer = sr.signature, reading_signer(sr, dom)
        else:
            sc = key.sign_cancel(device_id=dev, interval=k, nonce=nonce, domain=dom)
            ref = Account.sign_typed_data(secret, full_message=_typed(
                dom, "CancelOrders", {"device": dev, "interval": k, "nonce": nonce}))
            sig, signer = sc.signature, cancel_signer(sc, dom)
        assert sig == bytes(ref.signature), trial
        native = KeyAPI(NativeECCBackend).PrivateKey(secret).sign_msg_hash(bytes(ref.message_hash))
        assert sig == native.to_bytes()[:64] + bytes([native.v + 27])  # pure-Python RFC 6979
        assert signer == key.address
        assert recover(bytes(ref.message_hash), sig) == key.address
        assert Account._recover_hash(bytes(ref.message_hash), signature=sig) == key.address
        # another message under the same signature recovers someone else
        assert recover(bytes(32 - len(b"x")) + b"x", sig) != key.address


def test_malformed_signatures_recover_zero() -> None:
    key = DeviceKey.from_seed("referee")
    digest = bytes(range(32))
    sig = key.sign_digest(digest)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = r + (_N - s).to_bytes(32, "big") + bytes([55 - v])  # same point, high s: EIP-2
    assert Account._recover_hash(digest, signature=high_s) == key.address  # ecrecover accepts
    for bad in (high_s, sig[:64] + b"\x00", sig[:64] + b"\x1d", sig[:64], sig + b"\x00",
                bytes(32) + sig[32:], _N.to_bytes(32, "big") + sig[32:],
                r + bytes(32) + sig[64:], bytes(65)):
        assert recover(digest, bad) == ZERO_ADDRESS, bad.hex()
    assert recover(digest[:31], sig) == ZERO_ADDRESS
    flipped = sig[:64] + bytes([55 - v])
    assert recover(digest, flipped) not in (key.address,)


def test_struct_hash_fast_path_equals_general_path() -> None:
    from twin.market import signing as sg

    rng = random.Random(7)
    edges = [0, 1, 2**64 - 1, 2**63]
    for _ in range(200):
        d, k, n = (rng.choice([*edges, rng.randrange(2**64)]) for _ in range(3))
        e, p = (rng.choice([-(2**255), 2**255 - 1, rng.randrange(-(2**255), 2**255)]) for _ in range(2))
        it = OrderIntent(device_id=d, interval=k, side=rng.choice([Side.BUY, Side.SELL]),
                         energy_wh=e, price_per_mwh=p)
        assert sg.order_struct_hash(it, n) == sg._checked_order_struct_hash(it, n)
        assert sg.reading_struct_hash(d, k, e) == sg._keccak(
            sg._READING_TYPEHASH + sg._u(d) + sg._u(k) + sg._i(e))
    bad = OrderIntent(device_id=2**64, interval=1, side=Side.BUY, energy_wh=1, price_per_mwh=1)
    for call, field_name in ((lambda: sg.order_struct_hash(bad, 1), "device_id"),
                             (lambda: sg.reading_struct_hash(1, -1, 5), "interval"),
                             (lambda: sg.reading_struct_hash(1, 1, 2**255), "int256")):
        try:
            call()
        except ValueError as err:
            assert field_name in str(err)
        else:
            raise AssertionError(f"{field_name} out of range was accepted")


def test_batches_on_workers_equal_one_message_at_a_time(monkeypatch) -> None:
    """The batch path (numpy-encoded structs, shares signed and recovered by a worker
    process) gives every message's bytes and signer exactly as the one-message path, for
    edge values beyond int64 (one-message path), malformed and forged signatures too."""
    from eth_utils import to_checksum_address

    from twin.market import sign_pool
    from twin.market.device_signers import DeviceSigners
    from twin.market.signing import SignedOrder, SignedReading, _eip55
    from twin.market.signing_batch import recover_orders, recover_readings

    monkeypatch.setenv("GRIDTWIN_SIGN_BATCH_MIN", "4")
    monkeypatch.setenv("GRIDTWIN_SIGN_WORKERS", "1")
    rng = random.Random(11)
    for raw in [bytes(20), b"\xff" * 20, *(rng.randbytes(20) for _ in range(200))]:
        assert _eip55(raw) == to_checksum_address(raw)
    dom = Domain(chain_id=31337, verifying_contract=Account.create().address, salt=rng.randbytes(32))
    ids = [1, 2, 3, 2**63 + 5, 9]
    signers = DeviceSigners(seed="batch", device_ids=ids)
    intents = [OrderIntent(device_id=d, interval=rng.choice([4, 5, 6, 2**63]), side=rng.choice([Side.BUY, Side.SELL]),
                           energy_wh=rng.choice([1, 500, -(2**63), 2**63, 2**200]),
                           price_per_mwh=rng.randrange(-(2**62), 2**62) * rng.choice([1, 1, 1, 2**9]))
               for d in ids for _ in range(6)]
    try:
        signed = signers.sign_orders(intents, domain=dom)
        readings = signers.sign_readings(interval=7, metered_wh={d: rng.randrange(-(2**64), 2**64) for d in ids},
                                         domain=dom)
        for so in signed:
            assert so.signature == signers.key(so.intent.device_id).sign_order(
                so.intent, nonce=so.nonce, domain=dom).signature
        for r in readings:
            assert r.signature == signers.key(r.device_id).sign_reading(
                device_id=r.device_id, interval=7, metered_wh=r.metered_wh, domain=dom).signature
        # tamper: a high-s twin, a short signature, another key's signature, a changed field
        other = DeviceKey.from_seed("forger")
        s0 = signed[0].signature
        signed[0] = SignedOrder(signed[0].intent, signed[0].nonce,
                                s0[:32] + (_N - int.from_bytes(s0[32:64], "big")).to_bytes(32, "big")
                                + bytes([55 - s0[64]]))
        signed[1] = SignedOrder(signed[1].intent, signed[1].nonce, signed[1].signature[:64])
        signed[2] = other.sign_order(signed[2].intent, nonce=signed[2].nonce, domain=dom)
        signed[3] = SignedOrder(signed[3].intent, signed[3].nonce + 1, signed[3].signature)
        readings[0] = SignedReading(readings[0].device_id, 7, readings[0].metered_wh + 1, readings[0].signature)
        got = recover_orders(signed, dom)
        assert got == [order_signer(so, dom) for so in signed]
        assert got[0] == got[1] == ZERO_ADDRESS and got[2] == other.address
        assert got[3] != signers.key(ids[0]).address and got[4] == signers.key(ids[0]).address
        got_r = recover_readings(readings, dom)
        assert got_r == [reading_signer(r, dom) for r in readings]
        assert got_r[1:] == [signers.key(r.device_id).address for r in readings[1:]]
        assert sign_pool._WORKERS, "the batches went to a worker"
    finally:
        sign_pool.shutdown()


def test_raw_transactions_equal_eth_account() -> None:
    """twin.chain.keys.sign_eip1559 (hand RLP, libsecp256k1) gives eth_account's signed
    EIP-1559 transaction byte for byte, and its hash, for calls, transfers and deployments."""
    from twin.chain.keys import TxKey, sign_eip1559

    rng = random.Random(1559)
    for trial in range(12):
        key = TxKey.from_hex(rng.randbytes(32).hex())
        to = None if trial % 4 == 3 else Account.create().address
        fields = {"chain_id": rng.choice([1, 31337, rng.randrange(2**40)]),
                  "nonce": rng.choice([0, 1, rng.randrange(2**32)]),
                  "max_priority_fee": rng.choice([0, 10**9]),
                  "max_fee": rng.choice([10**9, rng.randrange(2**64)]),
                  "gas": rng.choice([21_000, 30_000_000]),
                  "value": rng.choice([0, rng.randrange(2**80)]),
                  "data": rng.randbytes(rng.choice([0, 4, 4 + 32 * 9 * 300]))}
        raw, tx_hash = sign_eip1559(key, to=to, **fields)
        ref = Account.sign_transaction({
            "type": 2, "chainId": fields["chain_id"], "nonce": fields["nonce"],
            "maxPriorityFeePerGas": fields["max_priority_fee"], "maxFeePerGas": fields["max_fee"],
            "gas": fields["gas"], "value": fields["value"], "data": fields["data"],
            **({"to": to} if to else {})}, key.secret)
        assert raw == bytes(ref.raw_transaction), trial
        assert tx_hash == "0x" + bytes(ref.hash).hex()
