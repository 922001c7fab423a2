"""Attacks of issue #19 performed on a real node, each shown to fail: a device registered to
owner 0x0 (its interval would be unclearable) and a green-token exchange whose DSO buys above
its selling price (buy-then-sell would drain the DSO). The reference refuses the same."""

from __future__ import annotations

import pytest

from twin.chain.clients import deploy_contract
from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e
from twin.market.signing import ZERO_ADDRESS
from twin.market.types import DSO_ACCOUNT
from twin.market.units import price_from_per_mwh
from twin.services.green_exchange.rules import GreenExchange, check_prices

pytestmark = pytest.mark.chain


def test_device_owned_by_zero_address_is_refused(chain_ledger: ChainLedger) -> None:
    with pytest.raises(ChainRevert) as caught:  # not even the DSO can
        chain_ledger.tx.transact_logs(chain_ledger.registry, "register",
                                      [99, ZERO_ADDRESS, 1, 1, 11_000], sender=DSO_ACCOUNT,
                                      purpose="attack: register device 99 to 0x0")
    assert caught.value.name == "ZeroOwner" and caught.value.values == {"device": 99}
    with pytest.raises(e.UnknownDevice):
        chain_ledger.device(99)


def test_exchange_buying_above_its_selling_price_is_refused(chain_ledger: ChainLedger) -> None:
    buy, sell = price_from_per_mwh(130.0), price_from_per_mwh(120.0)
    with pytest.raises(ChainRevert, match="DeployFailed") as caught:  # the contract itself
        deploy_contract(chain_ledger, "GreenTokenExchange", chain_ledger.token.address,
                        chain_ledger.registry.address, buy, sell)
    assert isinstance(caught.value.__cause__, e.BadPrice)
    assert caught.value.__cause__.values == {"device": 0, "price": buy}
    with pytest.raises(e.BadPrice) as ref:  # and the reference, with the same error
        check_prices(buy, sell)
    assert ref.value.values == {"device": 0, "price": buy}
    with pytest.raises(e.BadPrice):
        GreenExchange(devices={}, money=None, buy_price_per_mwh=buy,  # type: ignore[arg-type]
                      sell_price_per_mwh=sell)
    check_prices(sell, sell)  # equal prices are fine


def test_tokens_cannot_be_sent_to_the_zero_address(chain_ledger: ChainLedger) -> None:
    """ERC-20 edge case: a transfer or mint to 0x0 would make tokens vanish from every balance
    (SettlementToken: still counted in totalSupply; GreenCurrency: outside its burn count)."""
    led = chain_ledger
    supply = led.total_supply()
    with pytest.raises(e.UnsafeRecipient) as caught:
        led.transact_logs(led.token, "transfer", [ZERO_ADDRESS, 1], sender=2,
                          purpose="transfer to 0x0")
    assert caught.value.values == {"to": ZERO_ADDRESS}
    with pytest.raises(e.UnsafeRecipient):
        led.transact_logs(led.token, "mint", [ZERO_ADDRESS, 1], sender=0, purpose="mint to 0x0")
    led.transact_logs(led.token, "transfer", [led.address_of(3), 0], sender=2,
                      purpose="a zero transfer is a normal transfer (ERC-20)")
    assert led.total_supply() == supply
    currency = deploy_contract(led, "GreenCurrency", led.registry.address, led.address_of(0), 1, 1)
    with pytest.raises(e.UnsafeRecipient):
        led.transact_logs(currency, "transfer", [ZERO_ADDRESS, 1], sender=2,
                          purpose="green currency to 0x0")
