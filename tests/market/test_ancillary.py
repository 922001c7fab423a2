"""Frequency-regulation reference rules (twin/services/ancillary/rules.py): signal statistics, headroom
that really holds an interval of full regulation, procurement in whole watts, dispatch within
the SOC band, and a settlement that conserves money exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.market.types import DSO_ACCOUNT
from twin.market.wallets import Wallets
from twin.services.ancillary.rules import (
    AncillaryError,
    check_product,
    dispatch,
    load_signal,
    performance_score,
    procure,
    settle_regulation,
    storage_headroom_kw,
    synthetic_signal,
)

INTERVAL_S, STEP_S = 900, 60


def test_synthetic_signal_statistics_and_seed() -> None:
    sig = synthetic_signal(np.random.default_rng(7), n_intervals=96, interval_s=INTERVAL_S, step_s=STEP_S)
    assert sig.shape == (96, 15) and np.abs(sig).max() <= 1
    x = sig.ravel()
    assert abs(x.mean()) < 0.1 and 0.25 < x.std() < 0.45  # energy-neutral-ish, RegA-like spread
    assert np.corrcoef(x[:-1], x[1:])[0, 1] > 0.7  # slow: 5-minute correlation time
    again = synthetic_signal(np.random.default_rng(7), n_intervals=96, interval_s=INTERVAL_S, step_s=STEP_S)
    np.testing.assert_array_equal(sig, again)


def test_signal_file_and_product_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(AncillaryError, match=r"^signal\.file: .*does not exist"):
        load_signal(tmp_path / "nope.csv", n_intervals=1, interval_s=INTERVAL_S, step_s=STEP_S)
    f = tmp_path / "sig.csv"
    f.write_text("\n".join(["0.1"] * 14))
    with pytest.raises(AncillaryError, match=r"14 values.*need 15"):
        load_signal(f, n_intervals=1, interval_s=INTERVAL_S, step_s=STEP_S)
    with pytest.raises(AncillaryError, match="does not divide"):
        load_signal(f, n_intervals=1, interval_s=INTERVAL_S, step_s=70)
    f.write_text("\n".join(["0.1"] * 14 + ["1.5"]))
    with pytest.raises(AncillaryError, match=r"within \[-1, 1\]"):
        load_signal(f, n_intervals=1, interval_s=INTERVAL_S, step_s=STEP_S)
    f.write_text("\n".join(["-0.5"] * 15))
    assert load_signal(f, n_intervals=1, interval_s=INTERVAL_S, step_s=STEP_S).shape == (1, 15)
    with pytest.raises(AncillaryError, match=r"^market\.services\.regulation: .*without any capable"):
        check_product({"storage": 0, "ev": 0, "flex": 0}, field="market.services.regulation")


def test_headroom_holds_a_full_interval_of_regulation_inside_the_soc_band() -> None:
    cap = np.array([100_000.0, 100_000.0, 100_000.0])
    energy = np.array([50_000.0, 12_000.0, 94_000.0])  # middle, near empty, near full
    head = storage_headroom_kw(energy_wh=energy, capacity_wh=cap, power_kw=np.full(3, 30.0),
                               soc_min=0.1, soc_max=0.95, interval_s=INTERVAL_S)
    assert head[0] == pytest.approx(30.0) and head[1] == pytest.approx(8.0) and head[2] == pytest.approx(4.0)
    cap_w = np.floor(head * 1000)
    for sign in (1.0, -1.0):  # a whole interval at full up, then at full down regulation
        req, got, after = dispatch(np.full(15, sign), cap_w, step_s=STEP_S, energy_wh=energy,
                                   capacity_wh=cap, soc_min=0.1, soc_max=0.95)
        np.testing.assert_allclose(got, req)
        assert (performance_score(req, got) > 1 - 1e-9).all()
        assert ((after >= 0.1 * cap - 1e-9) & (after <= 0.95 * cap + 1e-9)).all()


def test_a_battery_that_runs_out_scores_below_one_and_conserves_energy() -> None:
    cap, energy = np.array([10_000.0]), np.array([2_000.0])  # 1 kWh above soc_min 0.1
    req, got, after = dispatch(np.ones(15), np.array([10_000.0]), step_s=STEP_S, energy_wh=energy,
                               capacity_wh=cap, soc_min=0.1, soc_max=0.9)
    assert after[0] == pytest.approx(1_000.0)  # emptied to soc_min, not below
    assert got.sum() * STEP_S / 3600 == pytest.approx(energy[0] - after[0])
    assert 0 < performance_score(req, got)[0] < 1


@given(requested=st.floats(0, 500), head=st.lists(st.floats(0, 100), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_procurement_in_whole_watts_within_headroom(requested: float, head: list[float]) -> None:
    out = procure(requested, dict(enumerate(head)))
    offered = sum(int(h * 1000) for h in head)
    assert sum(out.values()) == min(int(requested * 1000), offered)
    assert all(0 <= out[r] <= int(head[r] * 1000) for r in out)


def test_settlement_conserves_money_on_the_tso_and_vpp_wallets() -> None:
    rng = np.random.default_rng(3)
    sig = synthetic_signal(rng, n_intervals=1, interval_s=INTERVAL_S, step_s=STEP_S)[0]
    cap_w = np.array([30_000, 8_000, 4_000, 0])
    req, got, _ = dispatch(sig, cap_w, step_s=STEP_S)
    score = performance_score(req, got)
    st_ = settle_regulation(resources=[11, 12, 13, 14], capacity_w=cap_w, requested_w=req, score=score,
                            interval_s=INTERVAL_S, capacity_price_per_mw_h=20_000_000,
                            performance_price_per_mw=500_000)
    assert sum(st_.by_resource.values()) == st_.total > 0 and st_.by_resource[14] == 0
    # 42 kW for 15 min at 20 per MW-hour = 0.21 currency of capacity payment (score 1)
    assert st_.capacity_amount == 150_000 + 40_000 + 20_000
    vpp, wallets = 2, Wallets()
    wallets.mint(DSO_ACCOUNT, 10**9)  # the TSO pays through the DSO's wallet here
    before = wallets.total()
    wallets.transfer(DSO_ACCOUNT, vpp, st_.total)
    for r, amount in st_.by_resource.items():
        if amount:
            wallets.transfer(vpp, r, amount)
    assert wallets.total() == before and wallets.balance_of(vpp) == 0
