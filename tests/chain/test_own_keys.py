"""Own keys: the run's accounts are keys made from its seed, funded from one key; every
transaction is signed client-side and sent raw (no unlocked account on the node is used),
and a device's signature from one deployment is worthless in another."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from web3 import Web3

from tests.chain._helpers import PARAMS
from twin.chain.compile import CompiledContracts
from twin.chain.keys import ANVIL_DEV_KEY, TxKey, derive_keys
from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e
from twin.market.signing import DeviceKey
from twin.market.types import Device, DeviceKind, OrderIntent, Side
from twin.rpc_check import NodeRequirementError, check_rpc_node

pytestmark = pytest.mark.chain


def test_keys_come_from_the_seed() -> None:
    a, b = derive_keys(1, 3), derive_keys(2, 3)
    assert [k.address for k in a] == [k.address for k in derive_keys(1, 3)]
    assert not {k.address for k in a} & {k.address for k in b}
    with pytest.raises(ValueError, match="32 bytes"):
        TxKey.from_hex("0x1234")


def test_run_keys_sign_every_transaction(chain: Web3, compiled: CompiledContracts) -> None:
    keys = derive_keys("own-keys", 4)
    led = ChainLedger.deploy(chain, compiled=compiled, keys=keys,
                             funder=TxKey.from_hex(ANVIL_DEV_KEY), fund_wei=10**18, **PARAMS)
    unlocked = {a.lower() for a in chain.eth.accounts}
    assert not unlocked & {k.address.lower() for k in keys}  # the node holds none of them
    led.register_device(Device(device_id=5, owner=2, kind=DeviceKind.PV, bus=1, capacity_w=11_000))
    led.deposit(2, 1_000_000)
    led.set_time(0)
    [order] = led.place_orders([OrderIntent(device_id=5, interval=2, side=Side.SELL,
                                            energy_wh=1000, price_per_mwh=100_000_000)])
    assert order.owner == 2
    for rec in led.transactions:
        sent = chain.eth.get_transaction(rec.tx_hash)
        assert sent["from"] == keys[rec.sender].address and sent["type"] == 2
    assert led.tx.fees_wei > 0  # EIP-1559 fees, paid by the accounts
    assert led.tx.tx_gas <= 30_000_000


def test_unfunded_funder_fails_in_one_line(chain: Web3, compiled: CompiledContracts) -> None:
    broke = derive_keys("nobody funds me", 1)[0]
    with pytest.raises(ChainRevert, match=r"funding 2 run accounts .* FunderUnfunded"):
        ChainLedger.deploy(chain, compiled=compiled, keys=derive_keys("x", 2), funder=broke,
                           **PARAMS)
    url = str(chain.provider.endpoint_uri)  # type: ignore[attr-defined]
    with pytest.raises(NodeRequirementError, match="holds 0 wei"):
        check_rpc_node(url, funder=broke.address, need_wei=1)


def test_a_chain_id_changed_mid_run_fails_in_one_line(chain_ledger: ChainLedger) -> None:
    """The node's chain id changes under the run (here ``anvil_setChainId``): its next
    transaction is refused, in one line naming the purpose, the node and both chain ids."""
    led = chain_ledger
    was = led.tx.chain_id
    assert "error" not in led.tx.rpc("anvil_setChainId", [was + 7])
    try:
        with pytest.raises(ChainRevert) as info:
            led.deposit(2, 1_000)
    finally:
        led.tx.rpc("anvil_setChainId", [was])
    line = str(info.value)
    assert "\n" not in line and line.startswith("deposit") and str(led.tx._url) in line
    assert f"changed its chain id mid-run from {was} to {was + 7}" in line, line
    led.deposit(2, 1_000)  # the same chain again: the run's transactions go through


def test_a_node_lacking_a_method_fails_in_one_line(chain: Web3, compiled: CompiledContracts) -> None:
    """A node of another kind, without ``evm_setNextBlockTimestamp`` (the fault proxy in front
    of Anvil answers it "does not exist"): moving the clock names the node and the method."""
    cfg = {"upstream": str(chain.provider.endpoint_uri), "seed": 0,  # type: ignore[attr-defined]
           "lacks": ["evm_setNextBlockTimestamp"]}
    proxy = subprocess.Popen([sys.executable, "-m", "twin.faults.rpc_proxy_server", json.dumps(cfg)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout is not None
        url = proxy.stdout.readline().split()[1]
        led = ChainLedger.deploy(Web3(Web3.HTTPProvider(url)), compiled=compiled, **PARAMS)
        with pytest.raises(ChainRevert) as info:
            led.set_time(900)
    finally:
        assert proxy.stdin is not None
        proxy.stdin.close()
        proxy.wait(timeout=10)
    line = str(info.value)
    assert "\n" not in line and line.startswith("set_time: 900 s: the node at " + url), line
    assert "lacks evm_setNextBlockTimestamp (the method evm_setNextBlockTimestamp does not" in line


def test_signature_of_one_deployment_is_void_in_another(
    deploy: Callable[..., ChainLedger],
) -> None:
    first, second = deploy(), deploy()
    assert first.domain.separator != second.domain.separator
    key = DeviceKey.from_seed("replayed")
    intent = OrderIntent(device_id=5, interval=3, side=Side.SELL, energy_wh=500,
                         price_per_mwh=100_000_000)
    for led in (first, second):
        led.register_device(Device(device_id=5, owner=2, kind=DeviceKind.PV, bus=1,
                                   capacity_w=11_000))
        led.set_device_signer(5, key.address)
    signed = key.sign_order(intent, nonce=1, domain=first.domain)
    assert len(first.place_signed_orders([signed])) == 1
    with pytest.raises(e.BadSignature):
        second.place_signed_orders([signed])
