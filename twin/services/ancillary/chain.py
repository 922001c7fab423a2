"""The ``AncillaryServices`` contract behind the methods of
:class:`~twin.services.ancillary.rules.AncillaryLedger`."""

from __future__ import annotations

from collections.abc import Sequence

from web3.contract import Contract

from twin.chain.clients import ChainClient, deploy_contract, fund
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT
from twin.services.ancillary.reserve import ReservePayment
from twin.services.ancillary.rules import RegulationPayment

__all__ = ["ChainAncillary"]


class ChainAncillary(ChainClient):
    """:class:`~twin.services.ancillary.rules.AncillaryLedger` on chain
    (``AncillaryServices.sol``): the DSO's account settles each interval; the contract pays the
    resources' owners from the DSO's wallet (approved once)."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        self.led = led
        self.contract = contract
        self.payer = DSO_ACCOUNT
        self._approved: set[int] = set()

    @classmethod
    def deploy(cls, led: ChainLedger, *, interval_s: int, capacity_price_per_mw_h: int,
               performance_price_per_mw: int, reserve_capacity_price_per_mw_h: int = 0,
               reserve_energy_price_per_mwh: int = 0) -> ChainAncillary:
        prices = (capacity_price_per_mw_h, performance_price_per_mw, reserve_capacity_price_per_mw_h,
                  reserve_energy_price_per_mwh)
        for price in prices:
            if price < 0:  # the constructor's uint256 cannot hold it: the reference's error
                raise e.BadPrice(0, price)
        return cls(led, deploy_contract(led, "AncillaryServices", led.token.address, led.registry.address,
                                        interval_s, *prices))

    @property
    def paid(self) -> int:
        return self._uint("paid")

    def settle(self, *, sender: int, interval: int, devices: Sequence[int], capacity_w: Sequence[int],
               mileage_w: Sequence[int], score_ppm: Sequence[int]) -> list[RegulationPayment]:
        fund(self.led, account=sender, amount=0, spender=self.contract, approved=self._approved,
             mint=False)
        logs = self._send("settle", [interval, list(devices), list(capacity_w), list(mileage_w),
                                     list(score_ppm)], sender=sender, interval=interval,
                          purpose=f"regulation of interval {interval} ({len(devices)} resources)")
        return [RegulationPayment(interval, v["device"], v["owner"], v["capacityW"], v["mileageW"],
                                  v["scorePpm"], v["capacityAmount"], v["performanceAmount"])
                for v in self._events(logs, "RegulationPaid")]

    def settle_reserve(self, *, sender: int, interval: int, devices: Sequence[int],
                       capacity_w: Sequence[int], energy_wh: Sequence[int]) -> list[ReservePayment]:
        fund(self.led, account=sender, amount=0, spender=self.contract, approved=self._approved,
             mint=False)
        logs = self._send("settleReserve", [interval, list(devices), list(capacity_w), list(energy_wh)],
                          sender=sender, interval=interval,
                          purpose=f"reserve of interval {interval} ({len(devices)} resources)")
        return [ReservePayment(interval, v["device"], v["owner"], v["capacityW"], v["energyWh"],
                               v["capacityAmount"], v["energyAmount"])
                for v in self._events(logs, "ReservePaid")]
