"""Contract rules on a real Anvil, side by side with the reference ledger.

Tests taking ``ledger`` run twice (reference, chain) with the same expectations, so every
rule and every custom error is checked to be identical, decoded from the revert on chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web3 import Web3

from tests._orders import buy, sell
from tests._orders import cleared as _cleared
from tests._orders import raises as _raises
from twin.chain.anvil import AnvilError, AnvilNode
from twin.chain.compile import CompiledContracts, CompileError, compile_contracts
from twin.chain.ledger import ChainLedger, ChainRevert
from twin.market import errors as e
from twin.market.ledger import Ledger
from twin.market.types import (
    DSO_ACCOUNT,
    OPERATOR_ACCOUNT,
    Balance,
    Device,
    DeviceKind,
    Side,
)
from twin.market.units import PRICE_MAX, payment

pytestmark = pytest.mark.chain
RETAIL = 250_000_000
FEED_IN = 80_000_000
P = 105_000_000  # clearing price of _cleared()






# --- rules on both ledgers --------------------------------------------------------------
def test_orders_escrow_and_ids(ledger: Ledger) -> None:
    orders = ledger.place_orders(
        [buy(12, 2000, 120_000_000), sell(13, 1000, 90_000_000), buy(14, 10, 1)]
    )
    assert [(o.order_id, o.owner, o.side) for o in orders] == [
        (1, 2, Side.BUY),
        (2, 3, Side.SELL),
        (3, 4, Side.BUY),
    ]
    assert ledger.orders(0) == orders
    esc = payment(2000, 120_000_000)
    assert ledger.balance(2) == Balance(free=10_000_000 - esc, locked=esc, debt=0)
    assert ledger.place_orders([sell(15, 5, 5, interval=1)])[0].order_id == 4


def test_order_errors(ledger: Ledger) -> None:
    _raises(e.UnknownDevice, lambda: ledger.place_orders([buy(99, 1, 1)]), device=99)
    _raises(e.BadEnergy, lambda: ledger.place_orders([buy(12, 0, 1)]), device=12, energy=0)
    _raises(e.BadEnergy, lambda: ledger.place_orders([buy(12, -3, 1)]), device=12, energy=-3)
    _raises(e.BadPrice, lambda: ledger.place_orders([buy(12, 1, 0)]), device=12, price=0)
    _raises(
        e.BadPrice,
        lambda: ledger.place_orders([sell(12, 1, PRICE_MAX + 1)]),
        device=12,
        price=PRICE_MAX + 1,
    )
    _raises(
        e.CapacityExceeded,
        lambda: ledger.place_orders([buy(12, 2000, 1), buy(12, 751, 1)]),
        device=12,
        cap=2750,
        requested=2751,
    )
    _raises(
        e.InsufficientBalance,
        lambda: ledger.place_orders([buy(13, 2000, 4_000_000_000), buy(13, 750, 4_000_000_000)]),
        account=3, needed=3_000_000, available=2_000_000,
    )  # fmt: skip
    _raises(
        e.NotDeviceOwner,
        lambda: ledger.place_orders([sell(14, 1, 1)], sender=5),
        device=14,
        account=5,
    )
    assert ledger.orders(0) == []  # every failed batch left nothing behind
    assert ledger.balance(3) == Balance(free=10_000_000, locked=0, debt=0)
    ledger.place_orders([buy(12, 100, 1)])
    _raises(e.OppositeSide, lambda: ledger.place_orders([sell(12, 1, 1)]), device=12, interval=0)
    ledger.revoke_device(13)
    assert ledger.is_revoked(13)
    _raises(e.DeviceRevoked, lambda: ledger.place_orders([sell(13, 1, 1)]), device=13)
    ledger.clear(0)
    _raises(e.IntervalClosed, lambda: ledger.place_orders([buy(14, 1, 1)]), interval=0)


def test_error_message_names_order_and_decoded_error(ledger: Ledger) -> None:
    ledger.register_device(
        Device(device_id=7, owner=2, kind=DeviceKind.EV, bus=3, capacity_w=11_000)
    )
    with pytest.raises(e.CapacityExceeded) as info:
        ledger.place_orders([buy(12, 1, 1, interval=3), buy(7, 3000, 1, interval=3)])
    assert str(info.value).startswith(
        "place_orders: order for device 7 interval 3 reverted with CapacityExceeded(device=7, cap=2750, requested=3000)"
    )


def test_registry_and_role_errors(ledger: Ledger) -> None:
    dev = Device(device_id=50, owner=2, kind=DeviceKind.STORAGE, bus=4, capacity_w=7000)
    _raises(e.NotDSO, lambda: ledger.register_device(dev, sender=OPERATOR_ACCOUNT), account=0)
    ledger.register_device(dev)
    assert ledger.device(50) == dev
    _raises(e.DeviceExists, lambda: ledger.register_device(dev), device=50)
    _raises(e.UnknownDevice, lambda: ledger.revoke_device(51), device=51)
    _raises(e.NotDSO, lambda: ledger.revoke_device(50, sender=2), account=2)
    ledger.revoke_device(50)
    _raises(e.DeviceRevoked, lambda: ledger.revoke_device(50), device=50)
    _raises(e.NotOperator, lambda: ledger.clear(0, sender=DSO_ACCOUNT), account=1)
    _raises(e.NotCleared, lambda: ledger.settle(0, {}), interval=0)
    _raises(e.NotOperator, lambda: ledger.settle(0, {}, sender=3), account=3)


def test_money(ledger: Ledger) -> None:
    _raises(e.BadAmount, lambda: ledger.deposit(2, 0), amount=0)
    _raises(e.BadAmount, lambda: ledger.withdraw(2, 0), amount=0)
    _raises(
        e.InsufficientBalance,
        lambda: ledger.withdraw(2, 10_000_001),
        account=2,
        needed=10_000_001,
        available=10_000_000,
    )
    ledger.withdraw(2, 4_000_000)
    assert ledger.wallet(2) == 4_000_000
    assert ledger.balance(2) == Balance(free=6_000_000, locked=0, debt=0)
    assert ledger.total_supply() == 65_000_000
    assert ledger.market_holdings() == 61_000_000


def test_clear_curtail_settle(ledger: Ledger) -> None:
    _cleared(ledger)
    assert ledger.interval_status(0) == "cleared"
    _raises(e.AlreadyCleared, lambda: ledger.clear(0), interval=0)
    trades = ledger.trades(0)
    assert [
        (t.trade_id, t.buyer_device, t.seller_device, t.energy_wh, t.price_per_mwh) for t in trades
    ] == [
        (1, 13, 14, 1500, P),
        (2, 12, 14, 1000, P),
    ]
    assert ledger.balance(2).locked == payment(1000, P)
    _raises(e.NotDSO, lambda: ledger.curtail(2, 0, sender=OPERATOR_ACCOUNT), account=0)
    _raises(e.UnknownTrade, lambda: ledger.curtail(3, 0), trade=3)
    _raises(e.UnknownTrade, lambda: ledger.curtail(0, 0), trade=0)
    _raises(e.BadEnergy, lambda: ledger.curtail(2, -1), device=12, energy=-1)
    t = ledger.curtail(2, 400)
    assert (t.cleared_wh, t.energy_wh) == (1000, 400)
    assert ledger.balance(2).locked == payment(400, P)
    _raises(e.CurtailIncrease, lambda: ledger.curtail(2, 401), trade=2, current=400, requested=401)
    assert ledger.trades(0)[1] == t
    _raises(
        e.MissingMeterReading,
        lambda: ledger.settle(0, {12: 0, 14: 0, 15: 0}),
        device=13,
        interval=0,
    )
    _raises(e.UnknownDevice, lambda: ledger.settle(0, {12: 0, 13: 0, 14: 0, 99: 0}), device=99)
    rows = ledger.settle(0, {12: 500, 13: 1500, 14: -1900, 15: -100, 16: 0})
    assert [
        (
            r.device_id,
            r.owner,
            r.traded_wh,
            r.imbalance_wh,
            r.trade_amount,
            r.imbalance_amount,
            r.debt,
        )
        for r in rows
    ] == [
        # curtailed energy: consumed anyway at the trade price; the seller paid in full
        (12, 2, 400, 100, -payment(400, P), -payment(100, P), 0),
        (13, 3, 1500, 0, -payment(1500, P), 0, 0),
        (14, 4, -1900, 0, payment(1500, P) + payment(1000, P), 0, 0),
        (15, 5, 0, -100, 0, payment(100, FEED_IN), 0),
        (16, 6, 0, 0, 0, 0, 0),
    ]
    assert ledger.interval_status(0) == "settled"
    assert all(ledger.balance(a).locked == 0 for a in range(8))
    assert ledger.total_supply() == ledger.market_holdings() == 65_000_000
    _raises(e.AlreadySettled, lambda: ledger.settle(0, {12: 0, 13: 0, 14: 0}), interval=0)
    _raises(e.AlreadySettled, lambda: ledger.curtail(1, 0), interval=0)


def test_settlement_debt(ledger: Ledger) -> None:
    ledger.withdraw(3, 10_000_000)
    ledger.withdraw(DSO_ACCOUNT, 5_000_000)
    ledger.deposit(DSO_ACCOUNT, 1000)
    ledger.clear(0)
    rows = ledger.settle(0, {13: 40_000, 14: -30_000})
    assert (rows[0].imbalance_amount, rows[0].debt) == (0, payment(40_000, RETAIL))
    assert (rows[1].imbalance_amount, rows[1].debt) == (1000, payment(30_000, FEED_IN) - 1000)
    assert ledger.balance(3).debt == payment(40_000, RETAIL)
    assert ledger.balance(DSO_ACCOUNT) == Balance(
        free=0, locked=0, debt=payment(30_000, FEED_IN) - 1000
    )


# --- chain only ---------------------------------------------------------------------------
def test_clearing_list_is_verified(chain_ledger: ChainLedger) -> None:
    led = chain_ledger
    led.place_orders(
        [
            buy(12, 100, 5),
            buy(13, 100, 7),
            buy(14, 100, 5),
            sell(15, 100, 1),
            sell(16, 50, 2, interval=1),
        ]
    )
    bad = {
        "unsorted by price": ([1, 2, 3], [4], (0, 1, 2)),
        "tie not by id": ([2, 3, 1], [4], (0, 2, 1)),
        "duplicate": ([2, 1, 1], [4], (0, 2, 1)),
        "short": ([2, 1], [4], (0, 2, 0)),
        "ask in bids": ([2, 1, 4], [4], (0, 2, 4)),
        "other interval": ([2, 1, 3], [5], (1, 0, 5)),
        "unknown id": ([2, 1, 3], [9], (1, 0, 9)),
    }
    for why, (bids, asks, (side, pos, oid)) in bad.items():
        with pytest.raises(e.BadOrderList) as info:
            led.submit_clearing(0, bid_ids=bids, ask_ids=asks)
        assert info.value.values == {"side": side, "position": pos, "order": oid}, why
    c = led.submit_clearing(0, bid_ids=[2, 1, 3], ask_ids=[4])
    assert [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in c.trades] == [(2, 4, 100)]
    assert c.price_per_mwh == (7 + 1) // 2


def test_settle_readings_must_be_sorted(chain_ledger: ChainLedger) -> None:
    chain_ledger.clear(0)
    with pytest.raises(e.BadReadings) as info:
        chain_ledger._transact(
            chain_ledger.market,
            "settle",
            [0, [13, 12], [0, 0]],
            sender=OPERATOR_ACCOUNT,
            purpose="settle: unsorted",
        )
    assert info.value.values == {"position": 1}
    assert info.value.tx_hash is not None and "settle: unsorted reverted with BadReadings" in str(
        info.value
    )


def test_events_tx_table_and_manifest(chain_ledger: ChainLedger, w3: Web3) -> None:
    led = chain_ledger
    _cleared(led)
    led.curtail(1, 1000)
    led.settle(0, {12: 1000, 13: 1000, 14: -2000})
    funcs = [t.function for t in led.transactions]
    assert funcs[-4:] == [
        "EnergyMarket.placeOrders",
        "EnergyMarket.clear",
        "EnergyMarket.curtailBatch",
        "EnergyMarket.settle",
    ]
    assert all(t.status == 1 and t.gas_used > 21_000 and t.block > 0 for t in led.transactions)
    assert [t.interval for t in led.transactions[-4:]] == [0, 0, 0, 0]
    rec = led.transactions[-3]
    receipt = w3.eth.get_transaction_receipt(rec.tx_hash)
    assert receipt["gasUsed"] == rec.gas_used
    events = {
        ev: len(getattr(led.market.events, ev)().get_logs(from_block=led.deploy_block))
        for ev in (
            "OrdersPlaced",
            "TradeMatched",
            "Cleared",
            "Curtailed",
            "Settled",
            "IntervalSettled",
            "Deposited",
        )
    }
    assert events == {
        "OrdersPlaced": 1,  # one log a transaction, its 3 orders packed
        "TradeMatched": 2,
        "Cleared": 1,
        "Curtailed": 1,
        "Settled": 3,
        "IntervalSettled": 1,
        "Deposited": 7,
    }
    assert set(led.abis()) == {"SettlementToken", "DeviceRegistry", "EnergyMarket"}
    assert set(led.addresses()) == set(led.abis()) and led.chain_id == w3.eth.chain_id
    assert led.token.functions.decimals().call() == 6
    assert json.dumps(led.tx_table())


def test_token_rules(chain_ledger: ChainLedger) -> None:
    led = chain_ledger
    with pytest.raises(
        e.NotOperator, match=r"mint as non-operator reverted with NotOperator\(account=2\)"
    ):
        led._transact(
            led.token, "mint", [led.address_of(2), 5], sender=2, purpose="mint as non-operator"
        )
    with pytest.raises(ChainRevert) as info:
        led._transact(
            led.token,
            "transfer",
            [led.address_of(3), 5],
            sender=2,
            purpose="transfer without tokens",
        )
    assert info.value.name == "InsufficientTokens" and info.value.values == {
        "account": 2,
        "needed": 5,
        "available": 0,
    }


def test_attach_to_deployed(
    chain_ledger: ChainLedger, w3: Web3, compiled: CompiledContracts
) -> None:
    _cleared(chain_ledger)
    other = ChainLedger(
        w3,
        addresses=chain_ledger.addresses(),
        compiled=compiled,
        deploy_block=chain_ledger.deploy_block,
    )
    assert other.trades(0) == chain_ledger.trades(0)
    assert other.interval_s == 900 and other.retail_price_per_mwh == RETAIL


# --- tooling -----------------------------------------------------------------------------
def test_compile_cache_and_provenance(compiled: CompiledContracts, tmp_path: Path) -> None:
    again = compile_contracts()
    assert again.path == compiled.path and again.source_hash == compiled.source_hash
    doc = json.loads(compiled.path.read_text())
    assert doc["provenance"]["compiler"].startswith("solc-js 0.8.30")
    with pytest.raises(CompileError, match="make setup"):
        compile_contracts(node_modules=tmp_path, cache_dir=tmp_path)


def test_anvil_lifecycle(tmp_path: Path) -> None:
    state = tmp_path / "state" / "chain_state.json"
    node = AnvilNode(accounts=3, dump_state=state)
    with pytest.raises(KeyboardInterrupt), node:
        assert node.web3().eth.chain_id == 31337 and len(node.web3().eth.accounts) == 3
        raise KeyboardInterrupt
    assert not node.running and state.stat().st_size > 0
    node.stop()  # idempotent
    with pytest.raises(AnvilError, match="make setup"):
        AnvilNode(node_modules=tmp_path).start()
    with (
        pytest.raises(AnvilError, match="no answer"),
        AnvilNode(rpc_url=node.url, startup_timeout_s=0.3),
    ):
        pass  # nothing listens there any more
