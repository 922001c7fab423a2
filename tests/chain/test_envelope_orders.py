"""Operating envelopes at order time: the DSO publishes per-device export/import limits of an
open interval (``set_envelopes``; on chain ``EnergyMarket.setEnvelopes`` in the Usage slot);
orders beyond them raise / revert with ``EnvelopeExceeded`` on both ledgers alike."""

from __future__ import annotations

import pytest

from tests._orders import buy, raises, sell
from twin.market import errors as e
from twin.market.ledger import Ledger

pytestmark = pytest.mark.chain


def test_orders_beyond_the_envelope_are_rejected(ledger: Ledger) -> None:
    set_env = ledger.set_envelopes  # type: ignore[attr-defined]
    set_env(1, export_wh={14: 500, 12: 0, 15: 100}, import_wh={14: 0, 12: 800, 15: 0})
    ok = ledger.place_orders([sell(14, 300, 90_000_000, interval=1), buy(12, 800, 120_000_000, interval=1)])
    assert len(ok) == 2
    err = raises(e.EnvelopeExceeded, lambda: ledger.place_orders([sell(14, 201, 90_000_000, interval=1)]),
                 device=14, limit=500, requested=501)
    assert "envelope" in str(err)
    raises(e.EnvelopeExceeded, lambda: ledger.place_orders([buy(15, 1, 120_000_000, interval=1)]),
           device=15, limit=0, requested=1)
    ledger.place_orders([sell(14, 200, 90_000_000, interval=1)])  # up to the limit exactly
    ledger.place_orders([buy(13, 900, 120_000_000, interval=1)])  # no envelope: not limited
    # an envelope below what is already booked cannot be published; other intervals are free
    raises(e.BadAmount, lambda: set_env(1, export_wh={14: 100}, import_wh={14: 0}), amount=14)
    ledger.place_orders([sell(14, 900, 90_000_000, interval=2)])
    assert sum(t.energy_wh for t in ledger.clear(1).trades if t.seller_device == 14) <= 500


def test_only_the_dso_publishes_envelopes(ledger: Ledger) -> None:
    with pytest.raises(e.NotDSO):
        ledger.set_envelopes(1, export_wh={14: 1}, import_wh={14: 1}, sender=3)  # type: ignore[attr-defined]


def test_market_step_publishes_envelopes_before_the_orders(ledger: Ledger) -> None:
    """The run's market step (twin/market/step.py) sets the DSO's envelopes of k + 1 first,
    then books the agents' orders: one beyond them is refused by the ledger itself."""
    from twin.market.step import MarketLog, MarketStep

    step = MarketStep(ledger=ledger, interval_s=ledger.interval_s, n_intervals=4, log=MarketLog())
    env = {"export": {14: 400}, "import": {14: 0}}
    res = step.step(0, orders_interval=1, orders=[sell(14, 400, 90_000_000, interval=1),
                                                  buy(12, 400, 120_000_000, interval=1)],
                    curtailments=[], metered_wh=None, metered_interval=None, envelopes=env)
    assert sum(t.energy_wh for t in res.trades) == 400
    raises(e.EnvelopeExceeded,
           lambda: step.step(1, orders_interval=2, orders=[sell(14, 401, 90_000_000, interval=2)],
                             curtailments=[], metered_wh={12: 400, 14: -400}, metered_interval=1,
                             envelopes={"export": {14: 400}, "import": {14: 0}}),
           device=14, limit=400, requested=401)
