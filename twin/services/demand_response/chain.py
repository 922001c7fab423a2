"""The ``DemandResponse`` contract
behind the methods of :class:`~twin.services.demand_response.rules.DemandResponseLedger`."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from web3.contract import Contract

from twin.chain.clients import ChainClient, decode_events, deploy_contract, fund, negative_error
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT
from twin.market.units import payment
from twin.services.demand_response.rules import DREvent, DRPayout


class ChainDemandResponse(ChainClient):
    """:class:`~twin.services.demand_response.rules.DemandResponseLedger` on chain
    (``DemandResponse.sol``): posters (TSO, DSO) post events, the DSO records meters and
    settles, device owners commit."""

    def __init__(self, led: ChainLedger, contract: Contract, *, mint_funds: bool = True) -> None:
        self.led = led
        self.contract = contract
        self.mint_funds = mint_funds
        self.baseline_n = int(contract.functions.baselineN().call())
        self._approved: set[int] = set()
        self._interval: dict[int, int] = {}  # event id -> interval (tags its transactions)

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, baseline_n: int = 4, posters: Collection[int] = (DSO_ACCOUNT,),
        mint_funds: bool = True, penalty_bps: int = 0,
    ) -> ChainDemandResponse:
        """Commitments close by the market's clock (its ``marketStart`` and ``intervalS``)."""
        if baseline_n <= 0:
            raise ValueError("baseline_n must be > 0")
        if not 0 <= penalty_bps <= 10_000:
            raise ValueError("penalty_bps must be in [0, 10000]")
        addrs = [led.address_of(p) for p in sorted(posters)]
        market = led.market.functions
        return cls(
            led,
            deploy_contract(
                led, "DemandResponse", led.token.address, led.registry.address, addrs, baseline_n,
                int(market.marketStart().call()), int(market.intervalS().call()), penalty_bps,
            ),
            mint_funds=mint_funds,
        )  # fmt: skip

    def bond_of(self, wh: int, price_per_mwh: int) -> int:
        return int(self.contract.functions.bondOf(wh, price_per_mwh).call())

    @property
    def escrow(self) -> int:
        return int(self.contract.functions.escrow().call())

    def post_event(
        self, *, event_id: int, poster: int, interval: int, target_wh: int, price_per_mwh: int
    ) -> DREvent:
        budget = payment(target_wh, price_per_mwh) if target_wh > 0 and price_per_mwh > 0 else 0
        self._mark()
        fund(
            self.led, account=poster, amount=budget, spender=self.contract,
            approved=self._approved, mint=self.mint_funds,
        )  # fmt: skip
        try:
            logs = self.led.transact_logs(
                self.contract, "postEvent", [event_id, interval, target_wh, price_per_mwh],
                sender=poster, interval=interval, purpose=f"post DR event {event_id}",
            )  # fmt: skip
        except e.BadAmount as exc:  # the ABI's uint256 shows a negative target as 2**256 - x
            if exc.values["amount"] >= 2**255:
                raise negative_error(e.BadAmount, target_wh, purpose=exc.purpose or "") from None
            raise
        (ev,) = decode_events(self.led, self.contract, logs, "EventPosted")
        self._interval[event_id] = interval
        return DREvent(event_id, poster, interval, ev["targetWh"], ev["price"], ev["budget"])

    def commit(self, *, event_id: int, device_id: int, owner: int, reduction_wh: int) -> int:
        """Returns the bond change pulled from the owner (negative: returned)."""
        (_, _, old_bond) = self.contract.functions.commits(event_id, device_id).call()
        price = int(self.contract.functions.events(event_id).call()[6])
        bond = self.bond_of(reduction_wh, price) if reduction_wh > 0 else 0
        self._mark()
        if bond > old_bond:
            fund(
                self.led, account=owner, amount=bond - old_bond, spender=self.contract,
                approved=self._approved, mint=self.mint_funds,
            )  # fmt: skip
        self.led.transact_logs(
            self.contract, "commit", [event_id, device_id, reduction_wh], sender=owner,
            interval=self._interval.get(event_id), purpose=f"DR event {event_id}: device {device_id} commits {reduction_wh} Wh",
        )  # fmt: skip
        return bond - int(old_bond)

    def record_meter(self, device_id: int, interval: int, metered_wh: int) -> None:
        self.record_meters(interval, {device_id: metered_wh})

    def record_meters(self, interval: int, metered_wh: Mapping[int, int]) -> None:
        """Readings of one interval, all devices in one transaction (none: nothing sent)."""
        if not metered_wh:
            return
        devices = sorted(metered_wh)
        self._mark()
        self.led.transact_logs(
            self.contract, "recordMeters", [interval, devices, [metered_wh[d] for d in devices]],
            sender=DSO_ACCOUNT, interval=interval,
            purpose=f"DR meters of interval {interval} ({len(devices)} devices)",
        )  # fmt: skip

    def baseline_wh(self, device_id: int, interval: int) -> int:
        return int(self.contract.functions.baselineWh(device_id, interval).call())

    def settle_event(
        self, event_id: int, metered_wh: Mapping[int, int]
    ) -> tuple[list[DRPayout], int]:
        devices = sorted(metered_wh)
        self._mark()
        logs = self.led.transact_logs(
            self.contract, "settleEvent", [event_id, devices, [metered_wh[d] for d in devices]],
            sender=DSO_ACCOUNT, interval=self._interval.get(event_id),
            purpose=f"settle DR event {event_id}",
        )  # fmt: skip
        payouts = sorted(
            (
                DRPayout(
                    event_id,
                    v["device"],
                    v["owner"],
                    v["baselineWh"],
                    v["meteredWh"],
                    v["reductionWh"],
                    v["amount"],
                    v["penalty"],
                )
                for v in decode_events(self.led, self.contract, logs, "Compensated")
            ),
            key=lambda p: p.device_id,
        )
        (settled,) = decode_events(self.led, self.contract, logs, "EventSettled")
        return payouts, int(settled["refund"])
