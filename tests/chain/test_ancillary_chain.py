"""AncillaryServices.sol equals its reference (AncillaryLedger) on a real Anvil: payment for
payment, error for error, each interval once, and the tokens the DSO's wallet loses are the
ones the resources' owners gain (hypothesis, one snapshot per example)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chain._helpers import both, devices, module_ledger, reverted
from twin.chain.anvil import AnvilNode
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.types import DSO_ACCOUNT, DeviceKind
from twin.services.ancillary.chain import ChainAncillary
from twin.services.ancillary.rules import PPM, AncillaryLedger

pytestmark = pytest.mark.chain
DEVICES = {30: (2, DeviceKind.STORAGE), 31: (3, DeviceKind.EV), 32: (4, DeviceKind.LOAD)}
OWNERS = {d: o for d, (o, _) in DEVICES.items()}
PRICES = {"interval_s": 900, "capacity_price_per_mw_h": 40_000_000, "performance_price_per_mw": 2_000_000}


def _setup(led: ChainLedger) -> None:
    for dev in devices(DEVICES).values():
        led.register_device(dev)
    led.deposit(DSO_ACCOUNT, 10**12)
    led.withdraw(DSO_ACCOUNT, 10**12)  # the payer's wallet


@pytest.fixture(scope="module")
def base(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[tuple[AnvilNode, ChainLedger]]:
    yield from module_ledger(anvil, compiled, setup=_setup)


_resource = st.tuples(st.sampled_from([30, 30, 31, 32, 99]), st.integers(0, 500_000),
                      st.integers(0, 5_000_000),
                      st.one_of(st.integers(0, PPM), st.just(PPM), st.just(PPM + 1)))
_ops = st.lists(st.tuples(st.sampled_from([DSO_ACCOUNT] * 5 + [2]), st.integers(0, 3),
                          st.lists(_resource, max_size=3)), min_size=1, max_size=4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_ancillary_contract_matches_reference(base: tuple[AnvilNode, ChainLedger], ops: list) -> None:
    anvil, led = base
    with reverted(anvil):
        ref = AncillaryLedger(owners=OWNERS, payer=DSO_ACCOUNT, **PRICES)
        chain = ChainAncillary.deploy(led, **PRICES)
        before = {a: led.wallet(a) for a in (DSO_ACCOUNT, 2, 3, 4)}
        gained = dict.fromkeys((2, 3, 4), 0)
        for sender, interval, res in ops:
            kw = dict(sender=sender, interval=interval, devices=[r[0] for r in res],
                      capacity_w=[r[1] for r in res], mileage_w=[r[2] for r in res],
                      score_ppm=[r[3] for r in res])
            paid = both(lambda kw=kw: ref.settle(**kw), lambda kw=kw: chain.settle(**kw))
            for p in paid or []:
                gained[p.owner] += p.amount
        assert chain.paid == ref.paid == sum(gained.values())
        assert led.wallet(DSO_ACCOUNT) == before[DSO_ACCOUNT] - ref.paid
        assert all(led.wallet(o) == before[o] + gained[o] for o in gained)
        held = led.token.functions.balanceOf(chain.contract.address).call()
        assert held == 0  # paid wallet to wallet: the contract keeps nothing


RESERVE = {"reserve_capacity_price_per_mw_h": 10_000_000, "reserve_energy_price_per_mwh": 150_000_000}
_held = st.tuples(st.sampled_from([30, 30, 31, 99]), st.integers(0, 500_000), st.integers(0, 200_000))
_reserve_ops = st.lists(st.tuples(st.sampled_from([DSO_ACCOUNT] * 5 + [2]), st.integers(0, 2),
                                  st.booleans(), st.lists(_held, max_size=3)), min_size=1, max_size=5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_reserve_ops)
def test_reserve_settlement_matches_reference_and_conserves(base: tuple[AnvilNode, ChainLedger],
                                                            ops: list) -> None:
    """Reserve (capacity + activated energy) and regulation of the same interval are settled
    apart, each once; what the DSO's wallet loses the owners gain."""
    anvil, led = base
    with reverted(anvil):
        ref = AncillaryLedger(owners=OWNERS, payer=DSO_ACCOUNT, **PRICES, **RESERVE)
        chain = ChainAncillary.deploy(led, **PRICES, **RESERVE)
        before = {a: led.wallet(a) for a in (DSO_ACCOUNT, 2, 3, 4)}
        gained = dict.fromkeys((2, 3, 4), 0)
        for sender, interval, is_reserve, res in ops:
            devs, cap = [r[0] for r in res], [r[1] for r in res]
            if is_reserve:
                kw = dict(sender=sender, interval=interval, devices=devs, capacity_w=cap,
                          energy_wh=[r[2] for r in res])
                paid = both(lambda kw=kw: ref.settle_reserve(**kw), lambda kw=kw: chain.settle_reserve(**kw))
            else:
                kw = dict(sender=sender, interval=interval, devices=devs, capacity_w=cap,
                          mileage_w=[r[2] for r in res], score_ppm=[PPM] * len(res))
                paid = both(lambda kw=kw: ref.settle(**kw), lambda kw=kw: chain.settle(**kw))
            for p in paid or []:
                gained[p.owner] += p.amount
        assert chain.paid == ref.paid == sum(gained.values())
        assert led.wallet(DSO_ACCOUNT) == before[DSO_ACCOUNT] - ref.paid
        assert all(led.wallet(o) == before[o] + gained[o] for o in gained)
        assert led.token.functions.balanceOf(chain.contract.address).call() == 0
