"""Market services on the reference ledger: demand response, green certificates and
tokenized assets driven through the hooks the market adapter calls, with money moving
through the ledger and the token audit closing; scenario errors for services the feeder
cannot support."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests._quickstart import quickstart_with
from twin.market.audit import token_audit
from twin.market.reference import ReferenceLedger
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind, DRCall, OrderIntent, Side
from twin.market.units import payment
from twin.scenario import ScenarioError
from twin.services.assets.service import AssetService
from twin.services.assets.spec import AssetServiceSpec
from twin.services.base import MarketServices, MoneyRail, ServiceContext
from twin.services.certificates.service import CertificateService
from twin.services.demand_response.service import DemandResponseService
from twin.services.network_fee.service import NetworkFeeService

RETAIL, FEED_IN, PRICE = 250_000_000, 80_000_000, 400_000_000
#: device -> (owner, kind, agent name)
DEVICES = {1: (2, DeviceKind.PV, "household_0"), 2: (3, DeviceKind.PV, "household_1"),
           3: (4, DeviceKind.LOAD, "household_2"), 4: (5, DeviceKind.LOAD, "household_3"),
           5: (4, DeviceKind.EV, "ev_0"), 6: (6, DeviceKind.STORAGE, "storage_0")}  # fmt: skip
FUNDS = 50_000_000


def _ctx(offers: Mapping[int, Mapping[int, int]] | None = None,
         dso_funds: int = FUNDS) -> tuple[ServiceContext, int]:
    led = ReferenceLedger(interval_s=900, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN)
    devices = {d: Device(device_id=d, owner=o, kind=k, bus=d, capacity_w=11_000)
               for d, (o, k, _) in DEVICES.items()}
    for dev in devices.values():
        led.register_device(dev)
    minted = dso_funds
    led.deposit(DSO_ACCOUNT, dso_funds)
    for a in sorted({o for o, _, _ in DEVICES.values()}):
        led.deposit(a, FUNDS)
        minted += FUNDS
    ctx = ServiceContext(
        ledger=led, chain=False, rail=MoneyRail(led, chain=False), devices=devices,
        agent_devices={name: d for d, (_, _, name) in DEVICES.items()}, interval_s=900,
    )
    return ctx, minted


def _call(interval: int, requested_wh: int, offers: Mapping[int, Mapping[int, int]] | None,
          price_per_mwh: int = PRICE) -> DRCall:
    """The DR call the agents send for ``interval`` with the offers of the test."""
    return DRCall(interval=interval, requested_wh=requested_wh, price_per_mwh=price_per_mwh,
                  offers=dict((offers or {}).get(interval, {})))


def _audit(ctx: ServiceContext, services: MarketServices, minted: int, n_accounts: int = 12) -> dict:
    return token_audit(ctx.ledger, accounts=range(n_accounts), minted=minted,
                       value_holdings=services.value_holdings(),
                       wallet_adjustments=services.wallet_adjustments())


def _trade(led: ReferenceLedger, k: int, seller: int, buyer: int, wh: int,
           metered: Mapping[int, int]) -> tuple[list, list]:
    """One interval of the market: an ask and a bid of ``wh``, cleared and settled."""
    led.place_orders([OrderIntent(seller, k, Side.SELL, wh, 100_000_000),
                      OrderIntent(buyer, k, Side.BUY, wh, 200_000_000)])
    trades = list(led.clear(k).trades)
    rows = led.settle(k, dict(metered))
    return trades, rows


def test_demand_response_posts_commits_and_pays_metered_reduction() -> None:
    offers = {3: {5: 800, 6: 2000}}
    ctx, minted = _ctx(offers)
    dr = DemandResponseService(ctx, baseline_intervals=2)
    services = MarketServices([dr], rail=ctx.rail)
    base = {5: [1000, 1400], 6: [500, 700]}  # baselines: EV 1200, battery 600
    for k in range(2):
        services.on_settled(interval=k, trades=[], rows=[], metered_wh={5: base[5][k], 6: base[6][k], 1: -50})
    services.on_dr_call(_call(3, 2500, offers))
    free_before = ctx.ledger.balance(DSO_ACCOUNT).free
    services.on_settled(interval=2, trades=[], rows=[], metered_wh={5: 1200, 6: 600})  # posts
    budget = payment(2500, PRICE)
    assert ctx.ledger.balance(DSO_ACCOUNT).free == free_before - budget
    assert services.value_holdings() == budget and _audit(ctx, services, minted)["conserved"]
    # interval 3: the EV charges 100 Wh (baseline of 1..2 = 1300: 1200 cut, paid up to its
    # 800 commitment); the battery sells 300 Wh (baseline 650: 950 cut, within its 1700)
    services.on_settled(interval=3, trades=[], rows=[], metered_wh={5: 100, 6: -300})
    rows = services.rows()
    (ev_row,) = rows["dr_events"]
    pay = {r["device_id"]: r for r in rows["dr_payouts"]}
    assert pay[5]["baseline_wh"] == 1300 and pay[5]["reduction_wh"] == 800
    # the offers were filled up to the target: 800 + 1700 = 2500
    assert pay[6]["committed_wh"] == 1700 and pay[6]["baseline_wh"] == 650
    assert pay[6]["reduction_wh"] == 950
    assert pay[5]["amount"] == payment(800, PRICE) and pay[6]["amount"] == payment(950, PRICE)
    assert ev_row["paid"] + ev_row["refund"] == budget and ev_row["status"] == "settled"
    assert ev_row["paid"] == payment(800, PRICE) + payment(950, PRICE)
    audit = _audit(ctx, services, minted)
    assert audit["conserved"] and audit["value_holdings"] == 0
    # the payouts sit in the owners' wallets, the refund in the DSO's
    adj = services.wallet_adjustments()
    assert adj[4] == pay[5]["amount"] and adj[6] == pay[6]["amount"]
    assert ctx.ledger.wallet(DSO_ACCOUNT) + adj[DSO_ACCOUNT] == ev_row["refund"]


def test_demand_response_bond_pays_the_poster_for_non_delivery() -> None:
    """#19: a commitment escrows a bond (penalty_bps of its pay) from the owner's free
    balance; the shortfall's share goes to the DSO, the rest of the bond back; tokens are
    conserved; an owner who cannot post the bond does not commit."""
    offers = {3: {5: 800, 6: 2000}}
    ctx, minted = _ctx(offers)
    dr = DemandResponseService(ctx, baseline_intervals=2, penalty_bps=1000)
    services = MarketServices([dr], rail=ctx.rail)
    for k, (ev, bat) in enumerate([(1000, 500), (1400, 700)]):
        services.on_settled(interval=k, trades=[], rows=[], metered_wh={5: ev, 6: bat})
    services.on_dr_call(_call(3, 2500, offers))
    free6 = ctx.ledger.balance(6).free
    services.on_settled(interval=2, trades=[], rows=[], metered_wh={5: 1200, 6: 600})  # posts
    bond6 = payment(1700, PRICE) * 1000 // 10_000
    assert ctx.ledger.balance(6).free == free6 - bond6 and _audit(ctx, services, minted)["conserved"]
    services.on_settled(interval=3, trades=[], rows=[], metered_wh={5: 100, 6: -300})
    rows = services.rows()
    pay = {r["device_id"]: r for r in rows["dr_payouts"]}
    (ev_row,) = rows["dr_events"]
    penalty = payment(1700 - 950, PRICE) * 1000 // 10_000  # the battery cut 950 of 1700
    assert pay[5]["penalty"] == 0 and pay[6]["penalty"] == penalty > 0
    adj = services.wallet_adjustments()
    assert adj[6] == pay[6]["amount"] - penalty
    assert ctx.ledger.wallet(DSO_ACCOUNT) + adj[DSO_ACCOUNT] == ev_row["refund"] + penalty
    audit = _audit(ctx, services, minted)
    assert audit["conserved"] and audit["value_holdings"] == 0
    # an owner without the bond's free balance does not commit
    ctx2, _ = _ctx(offers)
    ctx2.ledger.withdraw(6, ctx2.ledger.balance(6).free)
    services2 = MarketServices([DemandResponseService(ctx2, baseline_intervals=2, penalty_bps=1000)],
                               rail=ctx2.rail)
    services2.on_dr_call(_call(3, 2500, offers))
    services2.on_settled(interval=2, trades=[], rows=[], metered_wh={5: 1200, 6: 600})
    services2.finish(interval=2)
    (open_row,) = services2.rows()["dr_events"]
    assert open_row["committed_wh"] == 800  # only the EV's owner posted a bond


def test_demand_response_event_the_dso_cannot_fund_is_not_posted() -> None:
    ctx, minted = _ctx({1: {5: 500}}, dso_funds=10)
    services = MarketServices([DemandResponseService(ctx, baseline_intervals=4)], rail=ctx.rail)
    services.on_dr_call(_call(1, 5000, {1: {5: 500}}))
    services.on_settled(interval=0, trades=[], rows=[], metered_wh={5: 10, 6: 0})
    services.on_settled(interval=1, trades=[], rows=[], metered_wh={5: 0, 6: 0})
    (row,) = services.rows()["dr_events"]
    assert row["status"] == "unfunded" and row["paid"] == 0
    assert ctx.ledger.balance(DSO_ACCOUNT).free == 10 and _audit(ctx, services, minted)["conserved"]


def test_demand_response_event_past_the_run_end_stays_escrowed() -> None:
    ctx, minted = _ctx({1: {5: 500}})
    services = MarketServices([DemandResponseService(ctx, baseline_intervals=4)], rail=ctx.rail)
    services.on_dr_call(_call(1, 600, {1: {5: 500}}))
    services.on_settled(interval=0, trades=[], rows=[], metered_wh={5: 10, 6: 0})
    services.finish(interval=0)  # the run ends before interval 1
    (row,) = services.rows()["dr_events"]
    assert row["status"] == "open" and row["committed_wh"] == 500
    audit = _audit(ctx, services, minted)
    assert audit["conserved"] and audit["value_holdings"] == row["budget"] == payment(600, PRICE)


def test_certificates_follow_metered_renewable_delivery_with_carry() -> None:
    ctx, _ = _ctx()
    certs = CertificateService(ctx, retire_share=0.5)
    services = MarketServices([certs], rail=ctx.rail)
    led = ctx.ledger
    delivered_total = 0
    # PV 1 sells 1500 Wh to LOAD 3 but meters only 1300 Wh of injection; then 900 Wh
    # delivered; storage 6 sells 2000 Wh (not renewable: no certificates)
    plan = [(0, 1, 3, 1500, -1300), (1, 1, 4, 900, -900), (2, 6, 3, 2000, -2000), (3, 1, 3, 800, -800)]
    for k, seller, buyer, wh, injected in plan:
        metered = {seller: injected, buyer: wh}
        trades, rows = _trade(led, k, seller, buyer, wh, metered)
        services.on_settled(interval=k, trades=trades, rows=rows, metered_wh=metered)
        if ctx.devices[seller].kind == DeviceKind.PV:
            delivered_total += min(wh, -injected)
        assert certs.ref.minted == delivered_total // 1000  # never rounded up: carried
    rows = services.rows()["certificates"]
    issued = [r for r in rows if r["action"] == "issued"]
    assert [(r["interval"], r["delivered_wh"], r["count"], r["holder"]) for r in issued] == [
        (0, 1300, 1, 4), (1, 900, 1, 5), (3, 800, 1, 4)]  # carry 300 -> 1200 -> 200 + 800
    # retire_share 0.5 of what each buyer received so far: account 4 got 1 then 2 -> retires 1
    retired = [(r["interval"], r["holder"], r["count"]) for r in rows if r["action"] == "retired"]
    assert retired == [(3, 4, 1)]
    assert certs.ref.minted == 3 and certs.ref.retired == 1 and certs.ref.outstanding() == 2


def test_asset_revenue_distributed_pro_rata_and_claimed_at_the_end() -> None:
    ctx, minted = _ctx()
    spec = AssetServiceSpec(asset="community_storage_0", investors=3, shares=10)
    asset = AssetService(ctx, spec=spec, asset_id=1, investors=[9, 10, 11])
    services = MarketServices([asset], rail=ctx.rail)
    assert asset.shares == {6: 0, 9: 4, 10: 3, 11: 3}
    led = ctx.ledger
    revenue = 0
    for k, wh in enumerate([2000, 1234, 777]):
        metered = {6: -wh, 3: wh}
        trades, rows = _trade(led, k, 6, 3, wh, metered)
        services.on_settled(interval=k, trades=trades, rows=rows, metered_wh=metered)
        revenue += sum(r.trade_amount for r in rows if r.device_id == 6)
    services.finish(interval=2)
    out = services.rows()
    assert sum(r["amount"] for r in out["asset_distributions"]) == revenue > 0
    claims = {r["holder"]: r["amount"] for r in out["asset_claims"]}
    for h, n in asset.shares.items():
        assert revenue * n // 10 - 3 <= claims[h] <= revenue * n // 10  # floor, dust bounded
    dust = revenue - sum(claims.values())
    assert services.value_holdings() == dust and 0 <= dust < 4 + 3
    audit = _audit(ctx, services, minted)
    assert audit["conserved"] and audit["value_holdings"] == dust


def test_network_fee_charges_buyers_the_published_fee_and_conserves_tokens() -> None:
    """Peak fee 50/MWh from 17:00 (interval 0 starts at 16:45): the buyer pays nothing in
    interval 0, payment(bought, fee) afterwards, as far as its free balance goes."""
    ctx, minted = _ctx()
    sc = quickstart_with(start="2016-06-15T16:45:00Z",
                         grid__tariff={"offpeak_fee_per_mwh": 0, "peak_fee_per_mwh": 50},
                         market__services={"network_fee": {"enabled": True}})
    fee = NetworkFeeService(ctx, scenario=sc)
    services = MarketServices([fee], rail=ctx.rail)
    led = ctx.ledger
    for k, wh in enumerate([2000, 1234]):
        metered = {1: -wh, 3: wh}
        trades, rows = _trade(led, k, 1, 3, wh, metered)
        services.on_settled(interval=k, trades=trades, rows=rows, metered_wh=metered)
    (row,) = services.rows()["network_fees"]
    assert (row["interval"], row["device_id"], row["payer"], row["energy_wh"]) == (1, 3, 4, 1234)
    assert row["due"] == row["amount"] == payment(1234, 50_000_000) and row["status"] == "paid"
    adj = services.wallet_adjustments()  # the DSO's wallet got what the buyer's market paid
    assert adj[DSO_ACCOUNT] == row["amount"] == -adj[4]
    assert led.wallet(4) + adj[4] == 0  # withdrawn from the market, paid on at once
    audit = _audit(ctx, services, minted)
    assert audit["conserved"] and audit["value_holdings"] == 0
    # a buyer whose free balance cannot cover the fee pays what it has: status short
    trades, rows = _trade(led, 2, 1, 3, 1000, {1: -1000, 3: 1000})
    led.withdraw(4, led.balance(4).free)
    services.on_settled(interval=2, trades=trades, rows=rows, metered_wh={1: -1000, 3: 1000})
    (short,) = services.rows()["network_fees"]
    assert short["status"] == "short" and short["amount"] == 0 < short["due"]
    assert _audit(ctx, services, minted)["conserved"]


@pytest.mark.parametrize(("changes", "path", "words"), [
    ({"market__services": {"assets": [{"asset": "storage_3"}]}},
     "market.services.assets.0.asset", "no agent 'storage_3'"),
    ({"market__services": {"assets": [{"asset": "pv_plant_0"}]}},
     "market.services.assets.0.asset", "should match pattern"),
    ({"market__services": {"assets": [{"asset": "storage_0", "investors": 5, "shares": 3}]}},
     "market.services.assets.0", "shares (3) must be at least investors (5)"),
    ({"market__services": {"assets": [{"asset": "storage_0"}, {"asset": "community_storage_0"}]}},
     "market.services.assets", "tokenized more than once"),
    ({"market__services": {"demand_response": {"enabled": True}}},
     "market.services.demand_response.enabled", "agents.tso.gap_threshold_kw"),
    ({"market__services": {"demand_response": {"enabled": True}}, "agents__tso__gap_threshold_kw": 5,
      "agents__evs__count": 0, "agents__community_storage__count": 0},
     "market.services.demand_response.enabled", "no flexible device"),
    ({"market__services": {"certificates": {"enabled": True}}, "agents__households__pv__share": 0},
     "market.services.certificates.enabled", "no renewable seller"),
    ({"market__services": {"certificates": {"retire_share": 1.5}}},
     "market.services.certificates.retire_share", "less than or equal to 1"),
    ({"market__services": {"bonus": True}}, "market.services.bonus", "unknown market service"),
    # the green exchange is a service, not a matching rule: naming it there says where it went
    ({"market__mechanism": "green_exchange"}, "market.mechanism",
     "set market.services.green_exchange.enabled"),
    ({"market__services": {"network_fee": {"enabled": True}}},
     "market.services.network_fee.enabled", "the DSO publishes no fee"),
    ({"agents__evs__count": 2, "agents__evs__battery_kwh": 0.5,
      "market__services": {"charger_tariffs": {"enabled": True}}},
     "market.services.charger_tariffs.min_lock_kwh", "no session could lock it"),
])
def test_services_the_scenario_cannot_support_are_scenario_errors(
    changes: dict, path: str, words: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        quickstart_with(**changes)
    assert any((p == path or m.startswith(f"{path}: ")) and words in m
               for p, m in info.value.errors), info.value.errors
