"""Stateful property test: random sequences of deposit, withdraw, order placement (plain and
device-signed), clearing (one-shot and chunked), curtailment, settlement (one-shot and
chunked, in any interval order), imbalance-bond release, revocation and clock moves (gate
closure), with an imbalance bond per device, run on a real Anvil ``ChainLedger`` and
the ``ReferenceLedger`` side by side (hypothesis ``RuleBasedStateMachine``, one snapshot
per example).

After every step: both ledgers agree (results, errors, balances, wallets, orders, trades,
statuses); tokens are conserved (total supply == minted == wallets + market holdings, and
the market holds exactly the free + locked + bond balances it books); escrow is exact (each
account's locked balance == its open bids' escrow + the payments its cleared, unsettled
trades will make).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.chain._helpers import PARAMS, module_ledger
from twin.chain.anvil import AnvilNode
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.errors import MarketError
from twin.market.reference import ReferenceLedger
from twin.market.signing import DeviceKey
from twin.market.types import Device, DeviceKind, OrderIntent, Side
from twin.market.units import payment

pytestmark = pytest.mark.chain
T = TypeVar("T")

CAPACITY_W = {30: 11_000, 31: 7_000, 32: 3_000, 33: 20_000, 34: 5_000, 35: 9_000}
OWNER = {30: 2, 31: 3, 32: 4, 33: 5, 34: 6, 35: 2}
KEYS = {d: DeviceKey.from_seed(f"stateful-{d}") for d in CAPACITY_W}
ACCOUNTS = range(8)
INTERVALS = range(1, 5)  # the random operations' intervals
#: the interval each example first trades through a whole cycle (``cycle``): the first, as
#: its clearing moves the clock past its gate (and not past the random intervals' gates)
CYCLE = 0
BASE_DEPOSIT = 200_000
#: each device's imbalance bond: a tenth of a deposit, so settlements draw on it, top it up
#: and leave debt beyond it
BOND = 20_000
PRICES = {  # bids and asks that often cross
    Side.BUY: st.sampled_from([90_000_000, 120_000_000, 150_000_000]),
    Side.SELL: st.sampled_from([60_000_000, 100_000_000, 130_000_000]),
}


def _base(led: Any) -> None:
    for dev, cap in CAPACITY_W.items():
        led.register_device(
            Device(
                device_id=dev, owner=OWNER[dev], kind=DeviceKind(dev % 5), bus=dev, capacity_w=cap
            )
        )
        led.set_device_signer(dev, KEYS[dev].address)
    for a in ACCOUNTS:
        led.deposit(a, BASE_DEPOSIT)


@pytest.fixture(scope="module")
def base(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[tuple[AnvilNode, ChainLedger]]:
    yield from module_ledger(anvil, compiled, setup=_base, imbalance_bond=BOND)


@st.composite
def _intent(draw: st.DrawFn, open_intervals: list[int], side: Side | None = None) -> OrderIntent:
    """Mostly sane (each device keeps its side, an interval still open), one in eight a rule
    breaker (energy <= 0 or beyond capacity, the opposite side, any interval)."""
    dev = draw(st.sampled_from([d for d in CAPACITY_W if side is None or d % 2 == side]))
    wild = draw(st.integers(0, 7)) == 0
    side = Side(draw(st.sampled_from([0, 1])) if wild else dev % 2)
    return OrderIntent(
        device_id=dev,
        interval=draw(st.sampled_from(list(INTERVALS) if wild else open_intervals or [INTERVALS[0]])),
        side=side,
        energy_wh=draw(st.integers(-1, 3000) if wild else st.integers(1, 500)),
        price_per_mwh=draw(st.integers(1, 2 * 10**8) if wild else PRICES[side]),
    )


class Market(RuleBasedStateMachine):
    """One example: a fresh view of the base market on both ledgers."""

    anvil: AnvilNode
    base_led: ChainLedger
    seen: Counter[str]  # outcomes over all examples: the sequences are not vacuous

    def __init__(self) -> None:
        super().__init__()
        self.snap = self.anvil.rpc("evm_snapshot")
        b = self.base_led
        # A new ledger object per example: no client-side state (clock, caches) survives a revert.
        self.chain = ChainLedger(
            b.w3, addresses=b.addresses(), compiled=b.compiled, deploy_block=b.deploy_block
        )
        self.chain._prepared.update(ACCOUNTS)  # approvals are in the base snapshot
        self.ref = ReferenceLedger(**PARAMS, imbalance_bond=BOND, domain=self.chain.domain)
        _base(self.ref)
        self.chain.set_time(self.ref.now_s)  # drop any block time a reverted example left set
        self.minted = BASE_DEPOSIT * len(ACCOUNTS)
        self.steps: list[str] = []
        self.seen_revokes = 0

    def teardown(self) -> None:
        assert self.anvil.rpc("evm_revert", self.snap) is True

    def _both(self, what: str, ref: Callable[[Any], T], chain: Callable[[ChainLedger], T]) -> bool:
        """One operation on both ledgers: the same result or the same error; True if it went
        through."""
        self.steps.append(what)
        try:
            expected = ref(self.ref)
        except MarketError as exc:
            with pytest.raises(type(exc)) as info:
                chain(self.chain)
            assert info.value == exc, (what, str(info.value), str(exc))
            self.seen[f"{what.split()[0]}: {exc.name}"] += 1
            return False
        got = chain(self.chain)
        assert got == expected, what
        self.seen[f"{what.split()[0]}: ok"] += 1
        if what.startswith("clear") and getattr(got, "trades", ()):
            self.seen["clear: trades"] += 1
        return True

    # --- rules ---------------------------------------------------------------------------
    @initialize(data=st.data())
    def cycle(self, data: st.DataObject) -> None:
        """Every example starts with one interval through its whole life on both ledgers:
        crossing orders, clearing with trades, a curtailment, settlement, the seller's bond
        released."""
        pair = [
            OrderIntent(30, CYCLE, Side.BUY, data.draw(st.integers(50, 500)), 150_000_000),
            OrderIntent(31, CYCLE, Side.SELL, data.draw(st.integers(50, 500)), 60_000_000),
        ]
        assert self._both("cycle place", lambda r: r.place_orders(pair[:1]),
                          lambda c: c.place_orders(pair[:1]))  # fmt: skip
        # the ask as the device signed it (a nonce the random rules never draw): every example
        # takes the signed path at least once, whatever the random sequence draws
        ask = [KEYS[31].sign_order(pair[1], nonce=10**6, domain=self.chain.domain)]
        assert self._both("cycle_signed place", lambda r: r.place_signed_orders(ask),
                          lambda c: c.place_signed_orders(ask))  # fmt: skip
        chunk = data.draw(st.sampled_from([None, 1]), label="cycle chunk")
        assert self._both("cycle clear", lambda r: r.clear(CYCLE),
                          lambda c: c.clear(CYCLE, chunk_orders=chunk, chunk_trades=chunk))  # fmt: skip
        (trade,) = self.ref.trades(CYCLE)
        wh = data.draw(st.integers(0, trade.energy_wh), label="cycle curtail")
        assert self._both("cycle curtail", lambda r: r.curtail(trade.trade_id, wh),
                          lambda c: c.curtail(trade.trade_id, wh))  # fmt: skip
        metered = {30: data.draw(st.integers(0, 600)), 31: -data.draw(st.integers(0, 600))}
        assert self._both("cycle settle", lambda r: r.settle(CYCLE, metered),
                          lambda c: c.settle(CYCLE, metered, chunk_trades=chunk,
                                             chunk_devices=chunk))  # fmt: skip
        assert self._both("cycle release_bond", lambda r: r.release_bond(OWNER[31], 31),
                          lambda c: c.release_bond(OWNER[31], 31))  # fmt: skip

    @rule(account=st.sampled_from(list(ACCOUNTS)), amount=st.integers(0, 300_000))
    def deposit(self, account: int, amount: int) -> None:
        if self._both(f"deposit {account} {amount}", lambda r: r.deposit(account, amount),
                      lambda c: c.deposit(account, amount)):  # fmt: skip
            self.minted += amount

    @rule(account=st.sampled_from(list(ACCOUNTS)), amount=st.integers(0, 400_000))
    def withdraw(self, account: int, amount: int) -> None:
        self._both(f"withdraw {account} {amount}", lambda r: r.withdraw(account, amount),
                   lambda c: c.withdraw(account, amount))  # fmt: skip

    def _batch(self, data: st.DataObject, label: str) -> list[OrderIntent]:
        """A bid, an ask and up to two more orders: books with both sides."""
        open_ = self._open()
        pair = [data.draw(_intent(open_, side), label=f"{label} {side.name}") for side in Side]
        more = data.draw(st.lists(_intent(open_), max_size=2), label=label)
        return data.draw(st.permutations(pair + more), label=f"{label} order")

    def _open(self) -> list[int]:
        return [i for i in INTERVALS if self.ref.interval_status(i) == "open"]

    def _with(self, status: str) -> list[int]:
        return [
            i for i in INTERVALS if self.ref.interval_status(i) == status and self.ref.orders(i)
        ]

    @rule(data=st.data())
    def place(self, data: st.DataObject) -> None:
        batch = self._batch(data, "batch")
        self._both(
            f"place {batch}", lambda r: r.place_orders(batch), lambda c: c.place_orders(batch)
        )

    @rule(data=st.data())
    def place_more(self, data: st.DataObject) -> None:
        """Orders are the common case: a second placement rule doubles their share."""
        self.place(data)

    @rule(data=st.data())
    def place_signed(self, data: st.DataObject) -> None:
        intents = self._batch(data, "signed batch")
        signed = [
            KEYS[it.device_id].sign_order(
                it, nonce=data.draw(st.integers(1, 6), label="nonce"), domain=self.chain.domain
            )
            for it in intents
        ]
        self._both(f"place_signed {signed}", lambda r: r.place_signed_orders(signed),
                   lambda c: c.place_signed_orders(signed))  # fmt: skip

    @precondition(lambda self: self._with("open"))
    @rule(data=st.data(), chunk=st.sampled_from([None, 1, 3]),
          per_call=st.sampled_from([None, 1, 2]))  # fmt: skip
    def clear(self, data: st.DataObject, chunk: int | None, per_call: int | None) -> None:
        interval = data.draw(st.sampled_from(self._with("open")), label="interval")
        self._both(f"clear {interval} ({chunk}, {per_call})", lambda r: r.clear(interval),
                   lambda c: c.clear(interval, chunk_orders=chunk, chunk_trades=per_call))  # fmt: skip

    @precondition(lambda self: any(self.ref.trades(i) for i in INTERVALS))
    @rule(data=st.data())
    def curtail(self, data: st.DataObject) -> None:
        trades = [t for i in INTERVALS for t in self.ref.trades(i)]  # settled ones too
        t = data.draw(st.sampled_from(trades), label="trade")
        trade_id = data.draw(st.sampled_from([t.trade_id, t.trade_id, 99]), label="trade id")
        wh = data.draw(st.integers(-1, t.energy_wh + 1), label="Wh")
        self._both(f"curtail {trade_id} {wh}", lambda r: r.curtail(trade_id, wh),
                   lambda c: c.curtail(trade_id, wh))  # fmt: skip

    @precondition(lambda self: self._with("cleared"))
    @rule(data=st.data(), chunks=st.sampled_from([(None, None), (1, 1), (2, 2)]))
    def settle(self, data: st.DataObject, chunks: tuple[Any, Any]) -> None:
        interval = data.draw(
            st.sampled_from([*self._with("cleared"), *INTERVALS]), label="interval"
        )
        metered: dict[int, int] = {}
        for dev in CAPACITY_W:
            if data.draw(st.booleans(), label=f"meter {dev}"):
                metered[dev] = data.draw(st.integers(-3000, 3000), label=f"reading {dev}")
        if data.draw(st.integers(0, 5), label="complete") > 0:  # usually every trader is read
            for t in self.ref.trades(interval):
                metered.setdefault(t.buyer_device, t.energy_wh)
                metered.setdefault(t.seller_device, -t.energy_wh)
        self._both(
            f"settle {interval} {metered} {chunks}", lambda r: r.settle(interval, metered),
            lambda c: c.settle(interval, metered, chunk_trades=chunks[0], chunk_devices=chunks[1]),
        )  # fmt: skip

    @rule(device=st.sampled_from(list(CAPACITY_W)), by_owner=st.sampled_from([True, True, False]))
    def release_bond(self, device: int, by_owner: bool) -> None:
        account = OWNER[device] if by_owner else 7
        self._both(f"release_bond {account} {device}", lambda r: r.release_bond(account, device),
                   lambda c: c.release_bond(account, device))  # fmt: skip

    @precondition(lambda self: self.seen_revokes < 2)  # keep most devices trading
    @rule(device=st.sampled_from(list(CAPACITY_W)))
    def revoke(self, device: int) -> None:
        self.seen_revokes += 1
        self._both(f"revoke {device}", lambda r: r.revoke_device(device),
                   lambda c: c.revoke_device(device))  # fmt: skip

    @rule(dt=st.sampled_from([0, 1, 450, 900]))
    def advance_time(self, dt: int) -> None:
        now = self.ref.now_s + dt
        self.steps.append(f"set_time {now}")
        self.ref.set_time(now)
        self.chain.set_time(now)

    # --- invariants ------------------------------------------------------------------------
    @invariant()
    def ledgers_agree_and_value_is_conserved(self) -> None:
        c, r = self.chain, self.ref
        balances = [c.balance(a) for a in ACCOUNTS]
        wallets = [c.wallet(a) for a in ACCOUNTS]
        assert balances == [r.balance(a) for a in ACCOUNTS], self.steps
        assert wallets == [r.wallet(a) for a in ACCOUNTS], self.steps
        holdings = c.market_holdings()
        assert c.total_supply() == r.total_supply() == self.minted == sum(wallets) + holdings
        assert holdings == sum(b.free + b.locked + b.bond for b in balances)
        escrow: dict[int, int] = defaultdict(int)
        for i in [*INTERVALS, CYCLE]:
            status, orders, trades = c.interval_status(i), c.orders(i), c.trades(i)
            assert (status, orders, trades) == (r.interval_status(i), r.orders(i), r.trades(i)), (
                i, self.steps,
            )  # fmt: skip
            owner = {o.order_id: o.owner for o in orders}
            if status == "open":
                for o in orders:
                    if o.side == Side.BUY:
                        escrow[o.owner] += payment(o.energy_wh, o.price_per_mwh)
            elif status == "cleared":
                for t in trades:
                    escrow[owner[t.buy_order_id]] += payment(t.energy_wh, t.price_per_mwh)
        assert [b.locked for b in balances] == [escrow[a] for a in ACCOUNTS], self.steps


def test_random_operation_sequences_keep_the_invariants(
    base: tuple[AnvilNode, ChainLedger],
) -> None:
    anvil, led = base

    class Bound(Market):
        pass

    Bound.anvil, Bound.base_led, Bound.seen = anvil, led, Counter()
    run_state_machine_as_test(
        Bound,
        settings=settings(
            max_examples=15, stateful_step_count=20, deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )  # fmt: skip
    print(dict(sorted(Bound.seen.items())))
    # Not vacuous: every example traded through a whole cycle, random operations went through
    # and others were rejected by a rule (the same one on both ledgers).
    assert Bound.seen["cycle: ok"] >= 4 * 5 and Bound.seen["cycle_signed: ok"] >= 5
    for op in ("deposit", "place", "clear"):
        assert Bound.seen[f"{op}: ok"] > 0, op
    # random signed batches: how many go through depends on the drawn sequence (15 of 15
    # examples failed them in one context: gate closed, device revoked); that they agree with
    # the reference is what the rule checks
    assert sum(n for k, n in Bound.seen.items() if k.startswith("place_signed: ")) > 0
    assert sum(n for k, n in Bound.seen.items() if not k.endswith((": ok", "trades"))) > 0
