"""Each market mechanism's reference equals its contract, on a real Anvil node."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._orders import buy, sell
from tests._quickstart import quickstart_with
from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.anvil import AnvilNode
from twin.chain.cda_chunks import CDA_CHUNK, plan_cda
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.cda import continuous_double_auction
from twin.market.ledger import Ledger
from twin.market.mechanisms import Mechanism
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, OrderIntent

EIP170_LIMIT = 24_576  # bytes of runtime code
BLOCK_GAS_LIMIT = 30_000_000  # a mainnet-like block (the twin's Anvil allows more)
ACCOUNTS = range(0, 8)


def _reference(mechanism: Mechanism) -> ReferenceLedger:
    led = ReferenceLedger(
        interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
        mechanism=mechanism,
    )  # fmt: skip
    setup_market(led)
    return led


def test_code_sizes_within_eip170(deploy: Callable[..., ChainLedger]) -> None:
    led = deploy(mechanism="cda")
    assert led.cda_library is not None
    for name, address in (("EnergyMarket", led.market.address), ("CdaMatching", led.cda_library)):
        code = led.w3.eth.get_code(address)
        print(f"\n{name}: {len(code):,} bytes of runtime code (EIP-170 limit {EIP170_LIMIT:,})")
        assert 0 < len(code) <= EIP170_LIMIT, (name, len(code))
    assert led.mechanism == "cda" and deploy().mechanism == "uniform"


def test_mechanism_is_fixed_before_the_first_order(chain_ledger: ChainLedger) -> None:
    chain_ledger.place_orders([buy(12, 100, 100_000_000)])
    op = chain_ledger.address_of(0)
    wrong = "0x" + keccak(text="WrongMechanism(uint256)")[:4].hex()
    with pytest.raises(Exception, match=wrong + "0{63}1"):
        chain_ledger.market.functions.setMechanism(1).call({"from": op})
    with pytest.raises(Exception, match=wrong + "0{64}"):  # uniform market: no clearCda
        chain_ledger.market.functions.clearCda(0, 1, 0, [1], [0], 10).call({"from": op})


def test_cda_verifies_hints_and_the_id_list(deploy: Callable[..., ChainLedger]) -> None:
    led = deploy(mechanism="cda")
    setup_market(led)
    # asks 1 @ 50, 2 @ 40, 3 @ 40: book order 2, 3, 1 -> hints 0, 0 (head), 2 (after 2)
    led.place_orders([sell(12, 10, 50), sell(13, 10, 40), sell(14, 10, 40)])
    op = {"from": led.address_of(0)}
    fn = led.market.functions.clearCda
    led.wait_for_gate(0)
    led.tx.rpc("evm_mine", [])  # the calls below run on the latest block: one past the gate

    def selector(sig: str) -> str:
        return "0x" + keccak(text=sig)[:4].hex()

    bad_hint = selector("BadHint(uint256,uint256)")
    with pytest.raises(Exception, match=bad_hint):  # 2 @ 40 does not go after 1 @ 50
        fn(0, 3, 0, [1, 2, 3], [0, 1, 2], 10).call(op)
    with pytest.raises(Exception, match=bad_hint):  # 3 @ 40 goes after 2 @ 40 (older)
        fn(0, 3, 0, [1, 2, 3], [0, 0, 0], 10).call(op)
    with pytest.raises(Exception, match=selector("BadOrderList(uint256,uint256,uint256)")):
        fn(0, 3, 0, [2, 1, 3], [0, 0, 2], 10).call(op)  # not in arrival order
    assert fn(0, 3, 0, [1, 2, 3], [0, 0, 2], 10).call(op) is True


# --- random books: reference == contract ---------------------------------------------------

book_st = st.lists(
    st.tuples(
        st.integers(12, 17),  # device
        st.integers(1, 400),  # Wh
        st.integers(8, 14).map(lambda p: p * 10_000_000),  # price, ties likely
        st.integers(0, 4),  # interval 1 for one in five orders (ids interleave)
    ),
    max_size=24,
)


@pytest.fixture(scope="module")
def markets(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[dict[str, ChainLedger]]:
    """One set-up chain market per mechanism and a snapshot of each (reverted per example)."""
    snap0 = anvil.rpc("evm_snapshot")
    out = {}
    for mech in ("uniform", "cda"):
        led = ChainLedger.deploy(
            anvil.web3(), compiled=compiled, interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
            feed_in_price_per_mwh=FEED_IN, mechanism=mech,
        )  # fmt: skip
        setup_market(led)
        out[mech] = led
    yield out
    anvil.rpc("evm_revert", snap0)


def _run_book(led: Ledger, intents: list[OrderIntent], chunk: int | None) -> tuple:
    led.place_orders(intents)
    kw = {} if chunk is None or isinstance(led, ReferenceLedger) else {"chunk_orders": chunk}
    clearing = led.clear(0, **kw)
    if clearing.trades:  # curtail the first trade by half: released at its own price
        t = clearing.trades[0]
        led.curtail(t.trade_id, t.energy_wh // 2)
    traded: dict[int, int] = {}
    for t in led.trades(0):
        traded[t.buyer_device] = traded.get(t.buyer_device, 0) + t.energy_wh
        traded[t.seller_device] = traded.get(t.seller_device, 0) - t.energy_wh
    metered = {d: wh + (d % 3) * 7 for d, wh in traded.items()}  # small imbalances
    rows = led.settle(0, metered)
    balances = [led.balance(a) for a in ACCOUNTS]
    return clearing, led.trades(0), rows, balances


@pytest.mark.parametrize("mechanism", ["uniform", "cda"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=book_st, sides=st.lists(st.booleans(), min_size=6, max_size=6),
       chunk=st.sampled_from([None, 1, 2, 3, 5]))  # fmt: skip
def test_reference_equals_contract_on_random_books(
    anvil: AnvilNode,
    markets: dict[str, ChainLedger],
    mechanism: Mechanism,
    rows: list,
    sides: list,
    chunk: int | None,
) -> None:
    led = markets[mechanism]
    intents = [
        (buy if sides[dev - 12] else sell)(dev, wh, price, interval=1 if k == 0 else 0)
        for dev, wh, price, k in rows
    ]
    snap = anvil.rpc("evm_snapshot")
    try:
        got = _run_book(led, intents, chunk)
    finally:
        assert anvil.rpc("evm_revert", snap) is True
    want = _run_book(_reference(mechanism), intents, chunk)
    assert got == want


@settings(max_examples=60, deadline=None)
@given(rows=book_st, sides=st.lists(st.booleans(), min_size=6, max_size=6),
       chunk=st.integers(1, 6))  # fmt: skip
def test_cda_plan_covers_the_book_in_bounded_calls(rows: list, sides: list, chunk: int) -> None:
    ref = _reference("cda")
    ref.place_orders([(buy if sides[d - 12] else sell)(d, wh, p) for d, wh, p, _ in rows])
    cda = continuous_double_auction(ref.orders(0))
    plan = plan_cda(cda, chunk=chunk)
    assert [i for c in plan for i in c.ids] == [s.order_id for s in cda.steps]
    assert [h for c in plan for h in c.hints] == [s.hint for s in cda.steps]
    assert all(len(c.ids) <= chunk and c.max_steps == chunk for c in plan)
    steps = len(cda.fills) + len(cda.resting_bids)
    assert len(plan) <= 1 + (len(cda.steps) + steps) // chunk + 1


# --- a 1,000-order CDA interval ------------------------------------------------------------


def test_thousand_order_cda_interval_fits_blocks(deploy: Callable[..., ChainLedger]) -> None:
    led = deploy(mechanism="cda")
    ref = ReferenceLedger(
        interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
        mechanism="cda",
    )  # fmt: skip
    for ledger in (led, ref):
        for a in range(2, 14):  # owners 2..7 buy, 8..13 sell
            ledger.deposit(a, 10**12)
        for a in range(2, 82):  # devices 2..41 buy, 42..81 sell; 4 MW each: 1 MWh per interval
            owner = 2 + (a - 2) % 6 if a < 42 else 8 + (a - 42) % 6
            ledger.register_device(Device(device_id=a, owner=owner, kind=DeviceKind.GENERATOR,
                                          bus=a, capacity_w=4_000_000))
    rng = random.Random(7)
    intents = []
    for i in range(1000):  # 12-13 orders per device: within MAX_ORDERS per interval
        dev = 2 + (i * 37) % 80
        price = rng.randrange(60, 141) * 1_000_000
        intents.append((buy if dev < 42 else sell)(dev, rng.randrange(50, 2000), price))
    for k in range(0, 1000, 100):
        led.place_orders(intents[k : k + 100])
        ref.place_orders(intents[k : k + 100])
    n0 = len(led.transactions)
    got = led.clear(0)
    want = ref.clear(0)
    assert got == want
    assert [led.balance(a) for a in range(14)] == [ref.balance(a) for a in range(14)]
    txs = led.transactions[n0:]
    assert {t.function for t in txs} == {"EnergyMarket.clearCda"}
    gas = [t.gas_used for t in txs]
    assert max(gas) < BLOCK_GAS_LIMIT
    cda = continuous_double_auction(ref.orders(0))
    print(
        f"\n1000-order CDA: {len(got.trades)} trades, {len(cda.resting_bids)} bids left, "
        f"{len(txs)} clearCda calls (chunk {CDA_CHUNK}), max {max(gas):,} gas/call, "
        f"total {sum(gas):,} gas = {sum(gas) // 1000:,} gas/order"
    )


# --- end to end: the quickstart with a CDA on both ledgers ------------------------------------


@pytest.mark.slow
def test_quickstart_cda_runs_on_both_ledgers_with_equal_trades(tmp_path: Path) -> None:
    from twin.run import run_scenario

    tables = {}
    for ledger in ("reference", "chain"):
        sc = quickstart_with(
            start="2016-06-15T10:00:00Z", duration_s=3 * 900, market__mechanism="cda",
            market__ledger=ledger, agents__households__count=16, agents__evs__count=3,
        )  # fmt: skip
        run_scenario(sc, out_dir=tmp_path / ledger, progress=False)
        tables[ledger] = {
            name: pq.read_table(tmp_path / ledger / f"{name}.parquet").to_pylist()
            for name in ("trades", "market")
        }
    assert tables["reference"] == tables["chain"]
    trades, market = tables["chain"]["trades"], tables["chain"]["market"]
    assert trades, "the scenario should trade"
    for row in market:  # the market table's price is the volume-weighted mean trade price
        ts = [t for t in trades if t["interval"] == row["interval"]]
        volume = sum(t["cleared_wh"] for t in ts)
        notional = sum(t["cleared_wh"] * t["price_per_mwh"] for t in ts)
        assert row["price_per_mwh"] == (notional // volume if volume else 0)
