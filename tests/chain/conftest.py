"""One Anvil node per test session; each test runs between evm_snapshot and evm_revert."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from web3 import Web3

from tests.chain._helpers import FEED_IN, INTERVAL_S, RETAIL, reverted
from twin.chain.anvil import AnvilNode
from twin.chain.compile import CompiledContracts, compile_contracts
from twin.chain.ledger import ChainLedger
from twin.market.ledger import Ledger
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind

pytestmark = pytest.mark.chain


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode(accounts=16) as node:
        yield node


@pytest.fixture(scope="session")
def compiled() -> CompiledContracts:
    return compile_contracts()


@pytest.fixture(scope="session")
def w3(anvil: AnvilNode) -> Web3:
    return anvil.web3()


@pytest.fixture
def chain(anvil: AnvilNode, w3: Web3) -> Iterator[Web3]:
    """The session's chain, reverted to its prior state after the test."""
    snap = anvil.rpc("evm_snapshot")
    try:
        yield w3
    finally:
        assert anvil.rpc("evm_revert", snap) is True


@pytest.fixture
def deploy(chain: Web3, compiled: CompiledContracts) -> Callable[..., ChainLedger]:
    def _deploy(**kw: int) -> ChainLedger:
        params = {
            "interval_s": INTERVAL_S,
            "retail_price_per_mwh": RETAIL,
            "feed_in_price_per_mwh": FEED_IN,
        } | kw
        return ChainLedger.deploy(chain, compiled=compiled, **params)

    return _deploy


def setup_market(led: Ledger) -> Ledger:
    """Devices 10+a for accounts a = 2..7 (11 kW: 2750 Wh per 15 min), all funded."""
    for a in range(2, 8):
        led.register_device(
            Device(device_id=10 + a, owner=a, kind=DeviceKind.PV, bus=a, capacity_w=11_000)
        )
        led.deposit(a, 10_000_000)
    led.deposit(1, 5_000_000)
    return led


@pytest.fixture(params=["reference", "chain"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    """A set-up market, once as the reference and once on chain: rules must agree."""
    if request.param == "reference":
        return setup_market(
            ReferenceLedger(
                interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN
            )
        )
    return setup_market(request.getfixturevalue("deploy")())


@pytest.fixture
def chain_ledger(deploy: Callable[..., ChainLedger]) -> ChainLedger:
    led = deploy()
    setup_market(led)
    return led


@pytest.fixture
def snap(base: tuple[AnvilNode, ChainLedger]) -> Iterator[ChainLedger]:
    """The ledger of the test module's ``base`` fixture, reverted after the test."""
    anvil, led = base
    with reverted(anvil):
        yield led
