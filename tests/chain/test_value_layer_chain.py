"""The value layer on chain equals its references (hypothesis, real Anvil, one snapshot per
example): AssetToken vs AssetLedger, GreenCertificate vs CertificateLedger (fed by the
market's own settlement), DemandResponse vs DemandResponseLedger — result for result, error
for error, and tokens conserved. Plus role checks and a reentrancy attack on claims."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.chain._helpers import PARAMS, both, devices, module_ledger, reverted
from twin.chain.anvil import AnvilNode
from twin.chain.clients import deploy_contract
from twin.chain.compile import CompiledContracts, compile_contracts
from twin.chain.ledger import ChainLedger, ChainRevert
from twin.market import errors as e
from twin.market.reference import ReferenceLedger
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT, DeviceKind, OrderIntent, Side
from twin.services.assets.chain import ChainAssetToken
from twin.services.assets.rules import AssetLedger
from twin.services.certificates.chain import ChainCertificates
from twin.services.certificates.rules import CertificateLedger
from twin.services.demand_response.chain import ChainDemandResponse
from twin.services.demand_response.rules import DemandResponseLedger

pytestmark = pytest.mark.chain
HOLDERS = range(2, 7)
#: device -> (owner, kind): PV sellers and LOAD buyers, 11 kW (2750 Wh per interval)
DEVICES = {30: (2, DeviceKind.PV), 31: (3, DeviceKind.PV), 32: (4, DeviceKind.STORAGE),
           33: (5, DeviceKind.LOAD), 34: (6, DeviceKind.LOAD), 35: (7, DeviceKind.LOAD)}  # fmt: skip
SLOW = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _setup(led: ChainLedger | ReferenceLedger) -> None:
    for dev in devices(DEVICES).values():
        led.register_device(dev)
    for a in range(2, 8):
        led.deposit(a, 5_000_000)


@pytest.fixture(scope="module")
def base(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[tuple[AnvilNode, ChainLedger]]:
    yield from module_ledger(anvil, compiled, setup=_setup)


# ----------------------------------------------------------------------------- AssetToken
_asset_ops = st.lists(
    st.one_of(
        st.tuples(st.just("distribute"), st.integers(-1, 10**9)),
        st.tuples(
            st.just("transfer"),
            st.sampled_from(HOLDERS),
            st.sampled_from(HOLDERS),
            st.integers(-1, 400),
        ),
        st.tuples(st.just("claim"), st.sampled_from(HOLDERS)),
    ),
    max_size=12,
)


@SLOW
@given(total=st.integers(1, 1000), ops=_asset_ops)
def test_asset_token_matches_reference(
    base: tuple[AnvilNode, ChainLedger], total: int, ops: list[tuple]
) -> None:
    anvil, led = base
    with reverted(anvil):
        ref = AssetLedger(asset_id=9, issuer=2, total_shares=total)
        chain = ChainAssetToken.deploy(led, asset_id=9, issuer=2, total_shares=total)
        wallets = {h: led.wallet(h) for h in HOLDERS}
        for op in ops:
            if op[0] == "distribute":
                both(lambda a=op[1]: ref.distribute(a), lambda a=op[1]: chain.distribute(a))
            elif op[0] == "transfer":
                both(
                    lambda o=op: ref.transfer(o[1], o[2], o[3]),
                    lambda o=op: chain.transfer(o[1], o[2], o[3]),
                )
            else:
                both(lambda h=op[1]: ref.claim(h), lambda h=op[1]: chain.claim(h))
        for h in HOLDERS:  # everyone pulls in the end: twice, the second pays nothing
            assert chain.claim(h) == ref.claim(h)
            assert chain.claim(h) == ref.claim(h) == 0
        for h in HOLDERS:
            assert chain.shares(h) == ref.shares(h)
            assert chain.claimable(h) == ref.claimable(h)
            assert chain.claimed(h) == ref.claimed(h)
            assert led.wallet(h) - wallets[h] == ref.claimed(h)  # paid exactly what was claimed
        assert chain.distributed == ref.distributed
        event(f"claimed: {bool(sum(ref.claimed(h) for h in HOLDERS))}")
        held = int(led.token.functions.balanceOf(chain.contract.address).call())
        assert held == ref.distributed - sum(ref.claimed(h) for h in HOLDERS)
        assert held - sum(ref.claimable(h) for h in HOLDERS) == ref.dust() >= 0


def test_claim_reentrancy_attack_fails(snap: ChainLedger) -> None:
    led = snap
    asset = ChainAssetToken.deploy(led, asset_id=1, issuer=2, total_shares=1000)
    attacker_code = compile_contracts(
        contracts_dir=Path(__file__).parent / "contracts", required=("ClaimAttacker",)
    )
    attacker = deploy_contract(
        led, "ClaimAttacker", asset.contract.address, led.address_of(3), compiled=attacker_code
    )
    led.transact_logs(
        asset.contract, "transfer", [attacker.address, 400], sender=2, purpose="sell to attacker"
    )
    asset.distribute(1_000_000)
    owed = int(asset.contract.functions.claimable(attacker.address).call())
    assert owed == 400_000
    for _ in range(2):  # the second attack finds nothing left
        led.transact_logs(attacker, "attack", [], sender=5, purpose="attack")
    paid = int(led.token.functions.balanceOf(attacker.address).call())
    assert paid == owed
    assert int(attacker.functions.hooks().call()) == 2
    reentrancy = keccak(text="Reentrancy()")[:4]
    assert attacker.functions.reclaimed().call() is False
    assert attacker.functions.movedShares().call() is False
    assert bytes(attacker.functions.claimError().call()) == reentrancy
    assert bytes(attacker.functions.transferError().call()) == reentrancy
    assert int(asset.contract.functions.sharesOf(attacker.address).call()) == 400
    assert asset.claimable(2) == 600_000 and asset.claim(2) == 600_000
    assert int(led.token.functions.balanceOf(asset.contract.address).call()) == 0


# ----------------------------------------------------------------------- GreenCertificate
@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[list[OrderIntent], list[int], dict[int, int]]:
    """Orders (sellers 30-32, buyers 33-35), curtailments, metered readings."""
    orders = [
        OrderIntent(
            device_id=dev,
            interval=0,
            side=Side.SELL if dev < 33 else Side.BUY,
            energy_wh=draw(st.one_of(st.integers(900, 2700), st.integers(1, 899))),
            price_per_mwh=draw(st.integers(40, 100) if dev < 33 else st.integers(90, 150))
            * 1_000_000,
        )
        for dev in DEVICES
        if draw(st.integers(0, 4)) != 4
    ]
    cuts = draw(st.lists(st.one_of(st.integers(60, 100), st.integers(0, 59)), max_size=3))
    # sellers mostly inject (negative), buyers mostly consume
    metered = {
        dev: draw(
            st.one_of(st.integers(-2750, -1200), st.integers(-1199, 300))
            if dev < 33
            else st.integers(-300, 2750)
        )
        for dev in DEVICES
    }
    return orders, cuts, metered


@SLOW
@given(first=_deliveries(), second=_deliveries(), moves=st.lists(st.integers(0, 3), max_size=4))
def test_green_certificates_match_reference(
    base: tuple[AnvilNode, ChainLedger],
    first: tuple[list[OrderIntent], list[int], dict[int, int]],
    second: tuple[list[OrderIntent], list[int], dict[int, int]],
    moves: list[int],
) -> None:
    anvil, led = base
    with reverted(anvil):
        ref = ReferenceLedger(**PARAMS)
        _setup(ref)
        certs_ref = CertificateLedger()
        certs = ChainCertificates.deploy(led)
        registry = devices(DEVICES)
        for interval, (orders, cuts, metered) in enumerate((first, second)):
            orders = [
                OrderIntent(o.device_id, interval, o.side, o.energy_wh, o.price_per_mwh)
                for o in orders
            ]
            if orders:
                assert led.place_orders(orders) == ref.place_orders(orders)
            with pytest.raises(e.NotSettled):
                certs.issue(interval)
            assert led.clear(interval) == ref.clear(interval)
            trades = ref.trades(interval)
            for k, pct in enumerate(cuts[: len(trades)]):
                t = trades[k]
                wh = t.energy_wh * pct // 100
                assert led.curtail(t.trade_id, wh) == ref.curtail(t.trade_id, wh)
            assert led.settle(interval, metered) == ref.settle(interval, metered)
            both(
                lambda i=interval, m=metered: certs_ref.issue(i, ref.trades(i), m, registry),
                lambda i=interval: certs.issue(i, max_trades=2),
            )
            both(
                lambda i=interval, m=metered: certs_ref.issue(i, ref.trades(i), m, registry),
                lambda i=interval: certs.issue(i),
            )  # once per interval
        assert certs.minted == certs_ref.minted
        event(f"certificates minted: {min(certs.minted, 3)}+")
        for k, amount in enumerate(moves):  # buyers pass on and retire some
            holder, vintage = 5 + k % 3, k % 2
            both(
                lambda h=holder, v=vintage, a=amount: certs_ref.transfer(h, 2, v, a),
                lambda h=holder, v=vintage, a=amount: certs.transfer(h, 2, v, a),
            )
            both(
                lambda v=vintage, a=amount: certs_ref.retire(2, v, a),
                lambda v=vintage, a=amount: certs.retire(2, v, a),
            )
        for holder in range(2, 8):
            for vintage in (0, 1):
                assert certs.balance_of(holder, vintage) == certs_ref.balance_of(holder, vintage)
        assert certs.retired == certs_ref.retired
        assert certs.outstanding() == certs_ref.outstanding()


def test_certificate_transfer_needs_owner_or_approval(snap: ChainLedger) -> None:
    certs = ChainCertificates.deploy(snap)
    with pytest.raises(e.NotApproved) as info:
        snap.transact_logs(
            certs.contract, "safeTransferFrom",
            [snap.address_of(5), snap.address_of(2), 0, 1, b""], sender=2, purpose="steal",
        )  # fmt: skip
    assert info.value.values == {"owner": 5, "operator": 2}
    assert certs.contract.functions.supportsInterface(bytes.fromhex("d9b67a26")).call()


# ------------------------------------------------------------------------- DemandResponse
_dr_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("post"),
            st.integers(0, 2),
            st.integers(3, 5),
            st.integers(-1, 6000),
            st.integers(0, 300_000_000),
        ),
        st.tuples(
            st.just("commit"),
            st.integers(0, 3),
            st.sampled_from(list(DEVICES)),
            st.integers(-1, 3000),
        ),
        st.tuples(
            st.just("meter"),
            st.sampled_from(list(DEVICES)),
            st.integers(0, 5),
            st.integers(-3000, 3000),
        ),
        st.tuples(
            st.just("settle"),
            st.integers(0, 3),
            st.dictionaries(st.sampled_from(list(DEVICES)), st.integers(-3000, 3000)),
        ),
    ),
    max_size=14,
)


@st.composite
def _dr_scenario(draw: st.DrawFn) -> list[tuple]:
    """A coherent event (baseline readings, commits, metered reduction), then random ops."""
    ops: list[tuple] = [
        ("post", 0, 4, draw(st.integers(500, 6000)), draw(st.integers(1, 300)) * 10**6)
    ]
    for dev in DEVICES:
        for i in range(1, 4):
            if draw(st.integers(0, 5)) > 0:
                ops.append(("meter", dev, i, draw(st.integers(-500, 3000))))
    for dev in DEVICES:
        if draw(st.booleans()):
            ops.append(("commit", 0, dev, draw(st.integers(1, 2500))))
    ops.append(("settle", 0, {d: draw(st.integers(-500, 3000)) for d in DEVICES
                             if draw(st.integers(0, 9)) > 0}))  # fmt: skip
    return ops + draw(_dr_ops)


@SLOW
@given(ops=_dr_scenario())
def test_demand_response_matches_reference(
    base: tuple[AnvilNode, ChainLedger], ops: list[tuple]
) -> None:
    anvil, led = base
    with reverted(anvil):
        ref = DemandResponseLedger(baseline_n=3, posters={DSO_ACCOUNT}, devices=led.device,
                                   interval_s=led.interval_s, clock=lambda: led.now_s)
        dr = ChainDemandResponse.deploy(led, baseline_n=3, posters={DSO_ACCOUNT})
        owners = {d: o for d, (o, _) in DEVICES.items()}
        wallets = {a: led.wallet(a) for a in range(1, 8)}
        paid: dict[int, int] = {}
        refunded = 0
        for op in ops:
            if op[0] == "post":
                kw = {"event_id": op[1], "poster": DSO_ACCOUNT, "interval": op[2],
                      "target_wh": op[3], "price_per_mwh": op[4]}  # fmt: skip
                both(lambda kw=kw: ref.post_event(**kw), lambda kw=kw: dr.post_event(**kw))
            elif op[0] == "commit":
                kw = {"event_id": op[1], "device_id": op[2], "owner": owners[op[2]],
                      "reduction_wh": op[3]}  # fmt: skip
                both(lambda kw=kw: ref.commit(**kw), lambda kw=kw: dr.commit(**kw))
            elif op[0] == "meter":
                ref.record_meter(op[1], op[2], op[3])
                dr.record_meter(op[1], op[2], op[3])
            else:
                out = both(
                    lambda o=op: ref.settle_event(o[1], o[2]),
                    lambda o=op: dr.settle_event(o[1], o[2]),
                )
                if out is not None:
                    for p in out[0]:
                        paid[p.owner] = paid.get(p.owner, 0) + p.amount
                    refunded += out[1]
        for d in DEVICES:
            for i in range(3, 6):
                assert dr.baseline_wh(d, i) == ref.baseline_wh(d, i)
        assert dr.escrow == ref.escrow
        event(f"compensation paid: {bool(sum(paid.values()))}")
        held = int(led.token.functions.balanceOf(dr.contract.address).call())
        assert held == ref.escrow  # escrow fully backed, nothing created or lost
        for a in range(2, 8):
            assert led.wallet(a) - wallets[a] == paid.get(a, 0)


def test_demand_response_roles(snap: ChainLedger) -> None:
    dr = ChainDemandResponse.deploy(snap, posters={DSO_ACCOUNT})
    with pytest.raises(e.NotPoster) as info:
        dr.post_event(event_id=1, poster=4, interval=3, target_wh=100, price_per_mwh=10**8)
    assert info.value.values == {"account": 4}
    dr.post_event(event_id=1, poster=DSO_ACCOUNT, interval=3, target_wh=1000, price_per_mwh=10**8)
    with pytest.raises(e.NotDeviceOwner):  # device 33 belongs to account 5
        snap.transact_logs(dr.contract, "commit", [1, 33, 10], sender=4, purpose="foreign")
    with pytest.raises(e.NotDSO):
        snap.transact_logs(dr.contract, "recordMeters", [2, [33], [5]], sender=5, purpose="fake")
    with pytest.raises(e.NotDSO):
        snap.transact_logs(dr.contract, "settleEvent", [1, [], []], sender=OPERATOR_ACCOUNT,
                           purpose="fake")  # fmt: skip
    with pytest.raises(e.UnknownEvent):
        dr.commit(event_id=7, device_id=33, owner=5, reduction_wh=10)
    dr.commit(event_id=1, device_id=33, owner=5, reduction_wh=10)
    payouts, refund = dr.settle_event(1, {33: 0})
    assert [p.amount for p in payouts] == [0] and refund == 100_000
    with pytest.raises(e.AlreadySettled):  # no double settlement, no double pay
        dr.settle_event(1, {33: 0})
    with pytest.raises(ChainRevert, match="InsufficientTokens"):  # budget must be backed
        snap.transact_logs(
            dr.contract, "postEvent", [2, 3, 10**6, 10**8], sender=DSO_ACCOUNT, purpose="unfunded"
        )
