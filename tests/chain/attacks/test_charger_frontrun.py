"""Attack of issue #19: a charger owner raises the tariff in front of a driver's session.
The driver starts with the price it saw as its maximum, so the raised tariff makes the
session revert (``TariffAboveLimit``) on a real node and in the reference, never overcharge;
the price of a started session stays locked."""

from __future__ import annotations

import pytest

from twin.chain.clients import ChainWallets
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import Device, DeviceKind
from twin.market.wallets import Wallets
from twin.services.charger_tariffs.chain import ChainChargerTariffs
from twin.services.charger_tariffs.rules import ChargerTariffs

pytestmark = pytest.mark.chain

CHARGER, OWNER, DRIVER = 45, 6, 2
SEEN, RAISED = 2 * 10**8, 5 * 10**8


def test_tariff_raised_in_front_of_a_session_is_refused(chain_ledger: ChainLedger) -> None:
    charger = Device(device_id=CHARGER, owner=OWNER, kind=DeviceKind.EV, bus=1, capacity_w=11_000)
    chain_ledger.register_device(charger)
    ChainWallets(chain_ledger).mint(DRIVER, 5_000_000)
    money = Wallets()
    money.mint(DRIVER, 5_000_000)
    chain = ChainChargerTariffs.deploy(chain_ledger, tariff_min_per_mwh=10**8,
                                       tariff_max_per_mwh=RAISED)
    ref = ChargerTariffs(devices={CHARGER: charger}, money=money, tariff_min_per_mwh=10**8,
                         tariff_max_per_mwh=RAISED)
    for ct in (chain, ref):
        ct.set_tariff(CHARGER, SEEN, sender=OWNER)  # what the driver sees posted
        ct.deposit(DRIVER, 3_000_000)
        ct.set_tariff(CHARGER, RAISED, sender=OWNER)  # the owner front-runs the driver
        with pytest.raises(e.TariffAboveLimit) as caught:
            ct.start_session(CHARGER, 10_000, driver=DRIVER, max_price_per_mwh=SEEN)
        assert caught.value.values == {"charger": CHARGER, "price": RAISED, "max_price": SEEN}
        assert ct.escrow(DRIVER) == (3_000_000, 0)  # nothing locked
        ct.set_tariff(CHARGER, SEEN, sender=OWNER)
        s = ct.start_session(CHARGER, 10_000, driver=DRIVER, max_price_per_mwh=SEEN)
        ct.set_tariff(CHARGER, RAISED, sender=OWNER)  # too late: the session's price is locked
        assert ct.end_session(s.session_id, 5_000).price_per_mwh == SEEN


def test_tiny_session_cannot_hold_a_charger_cheaply(chain_ledger: ChainLedger) -> None:
    """A driver blocking the charger with a 1 Wh session (``ChargerBusy`` for everyone else)
    is refused: a session locks at least the contract's minimum."""
    charger = Device(device_id=CHARGER, owner=OWNER, kind=DeviceKind.EV, bus=1, capacity_w=11_000)
    chain_ledger.register_device(charger)
    ChainWallets(chain_ledger).mint(DRIVER, 5_000_000)
    money = Wallets()
    money.mint(DRIVER, 5_000_000)
    min_lock = 1_000_000  # 5 kWh at SEEN
    chain = ChainChargerTariffs.deploy(chain_ledger, tariff_min_per_mwh=10**8,
                                       tariff_max_per_mwh=RAISED, min_lock=min_lock)
    ref = ChargerTariffs(devices={CHARGER: charger}, money=money, tariff_min_per_mwh=10**8,
                         tariff_max_per_mwh=RAISED, min_lock=min_lock)
    for ct in (chain, ref):
        ct.set_tariff(CHARGER, SEEN, sender=OWNER)
        ct.deposit(DRIVER, 3_000_000)
        with pytest.raises(e.LockBelowMinimum) as caught:
            ct.start_session(CHARGER, 1, driver=DRIVER, max_price_per_mwh=SEEN)
        assert caught.value.values == {"charger": CHARGER, "lock": 200, "min_lock": min_lock}
        assert ct.escrow(DRIVER) == (3_000_000, 0)
        s = ct.start_session(CHARGER, 5_000, driver=DRIVER, max_price_per_mwh=SEEN)
        assert s.locked == min_lock
