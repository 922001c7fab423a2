"""Batched set-up (twin/chain/ledger_setup.py) leaves the chain exactly as the per-item calls
do, and a batch with one bad entry reverts with the decoded error naming that entry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from twin.chain import ledger_setup
from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind

pytestmark = pytest.mark.chain

FUNDING = {1: 5_000_000} | {a: 1_000_000 + a for a in range(2, 9)}
DEVICES = [Device(device_id=100 + i, owner=2 + i % 7, kind=DeviceKind(i % 3), bus=i,
                  capacity_w=1000 * (i + 1)) for i in range(11)]
SIGNERS = {d.device_id: f"0x{d.device_id:040x}" for d in DEVICES}


def _state(led: ChainLedger) -> tuple[object, ...]:
    reg = led.registry.functions
    return (
        reg.deviceCount().call(),
        [(tuple(reg.get(d.device_id).call()), reg.signerOf(d.device_id).call())
         for d in DEVICES],
        [(led.wallet(a), led.balance(a)) for a in FUNDING],
        led.total_supply(), led.market_holdings(),
        [int(led.token.functions.allowance(led.address_of(a), led.market.address).call())
         for a in FUNDING],
    )


def test_batch_setup_equals_per_item_and_bad_entry_is_named(
        deploy: Callable[..., ChainLedger], monkeypatch: pytest.MonkeyPatch) -> None:
    one = deploy()
    for a, amount in FUNDING.items():
        one.deposit(a, amount)
    for d in DEVICES:
        one.register_device(d)
    for device_id, signer in SIGNERS.items():
        one.set_device_signer(device_id, signer)

    monkeypatch.setattr(ledger_setup, "REGISTER_CHUNK", 4)  # several chunks
    monkeypatch.setattr(ledger_setup, "SIGNER_CHUNK", 5)
    monkeypatch.setattr(ledger_setup, "MINT_CHUNK", 3)
    batch = deploy()
    n0 = len(batch.transactions)
    batch.deposit_many(FUNDING)
    batch.register_devices(DEVICES)
    batch.set_device_signers(SIGNERS)
    assert _state(batch) == _state(one)
    fns = [t.function for t in batch.transactions[n0:]]
    assert fns.count("DeviceRegistry.registerDevices") == 3
    assert fns.count("SettlementToken.mintBatch") == 3
    assert fns.count("DeviceRegistry.setSigners") == 3
    assert "DeviceRegistry.register" not in fns

    # one bad entry (an id already registered) in the middle of a batch: nothing of it stays
    fresh = [Device(device_id=500 + i, owner=3, kind=DeviceKind.PV, bus=1, capacity_w=5)
             for i in range(3)]
    with pytest.raises(e.DeviceExists) as info:
        batch.register_devices([fresh[0], DEVICES[5], fresh[1]])
    assert info.value.values == {"device": DEVICES[5].device_id}
    assert "register_devices" in str(info.value)
    assert batch.registry.functions.deviceCount().call() == len(DEVICES)
    assert batch.registry.functions.get(fresh[0].device_id).call()[2] == 0
    with pytest.raises(e.UnknownDevice) as unknown:
        batch.set_device_signers({DEVICES[0].device_id: SIGNERS[100], 999: SIGNERS[100]})
    assert unknown.value.values == {"device": 999}
    # arrays of different lengths and a non-DSO sender: decoded, naming field and account
    with pytest.raises(ChainRevert, match="BatchLengths") as lengths:
        batch.tx.receipt(batch.tx.send(
            batch.registry, "registerDevices", [[600, 601], [batch.address_of(3)], [0, 0],
                                                [1, 1], [5, 5]],
            sender=DSO_ACCOUNT, purpose="bad batch"))
    assert lengths.value.values == {"field": 1, "length": 1, "devices": 2}
    with pytest.raises(e.NotDSO) as not_dso:
        batch.register_devices(fresh, sender=4)
    assert not_dso.value.values == {"account": 4}
