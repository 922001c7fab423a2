"""End to end: frequency regulation (market.services.ancillary) in a short quickstart run with
two community batteries, EV chargers, flexible loads and a VPP, once on the reference ledger and once on
a real Anvil (AncillaryServices.sol): identical tables (but tx hashes) and KPIs, every payment
re-derived from the recorded rows, the batteries inside their SOC band with the procured
headroom never sold on the energy market, and the token audit closed on both ledgers; with an
upward reserve product beside regulation, activated in two listed intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests._quickstart import quickstart_with
from twin.run import run_scenario
from twin.services.ancillary.reserve import reserve_amounts
from twin.services.ancillary.rules import PPM, regulation_amounts

pytestmark = pytest.mark.slow

CHANGES = dict(
    # 17:00-19:00: EVs home and plugged, flexible loads inside their window
    start="2016-06-15T17:00:00Z", duration_s=2 * 3600,
    agents__community_storage__count=2, agents__vpp={"members": 5},
    agents__households__flex={"share": 0.2, "energy_kwh": 5, "power_kw": 3,
                              "earliest_hour": 8, "latest_hour": 20},
    market__services={"ancillary": {"enabled": True, "requested_kw": 40,
                                    "capacity_price_per_mw_h": 40, "performance_price_per_mw": 2,
                                    "reserve": {"enabled": True, "requested_kw": 20, "activated_intervals": [3, 6],
                                                "capacity_price_per_mw_h": 10, "energy_price_per_mwh": 150}}},
)
TABLES = ("regulation", "regulation_intervals", "reserve")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ancillary")
    out = {}
    for ledger in ("reference", "chain"):
        out[ledger] = tmp / ledger
        run_scenario(quickstart_with(market__ledger=ledger, **CHANGES), out_dir=out[ledger],
                     progress=False)
    return out


def _t(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / f"{name}.parquet").to_pandas()


def _kpis(out: Path) -> dict[str, float]:
    k = json.loads((out / "kpis.json").read_text())
    for chain_only in ("wall_time_s", "gas_per_kwh", "chain_cost_per_kwh"):
        k.pop(chain_only, None)
    return k


def test_both_ledgers_settle_regulation_identically_and_conserve(runs: dict[str, Path]) -> None:
    ref, chain = runs["reference"], runs["chain"]
    for name in TABLES:
        a, b = _t(ref, name), _t(chain, name)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a.drop(columns="tx_hash"), b.drop(columns="tx_hash"))
    paid = _t(chain, "regulation")
    assert (paid["tx_hash"] != "").all() and (_t(ref, "regulation")["tx_hash"] == "").all()
    sent = dict(zip(*(_t(chain, "chain")[c] for c in ("tx_hash", "function")), strict=True))
    assert {sent[h] for h in paid["tx_hash"]} == {"AncillaryServices.settle"}
    assert {sent[h] for h in _t(chain, "reserve")["tx_hash"]} == {"AncillaryServices.settleReserve"}
    assert _kpis(ref) == _kpis(chain)
    for out in (ref, chain):
        tokens = json.loads((out / "manifest.json").read_text())["tokens"]
        assert tokens["conserved"] and tokens["total_supply"] == tokens["minted"]
    assert "AncillaryServices" in json.loads((chain / "manifest.json").read_text())["chain"]["value_contracts"]


def test_regulation_is_procured_followed_and_paid_by_the_rules(runs: dict[str, Path]) -> None:
    out = runs["reference"]
    k = _kpis(out)
    reg, iv = _t(out, "regulation"), _t(out, "regulation_intervals")
    settled = iv[iv["status"] == "settled"]
    assert len(settled) >= 6 and k["anc_capacity_mw_h"] > 0 and k["ancillary_revenue"] > 0
    assert (iv["procured_w"] <= iv[["requested_w", "offered_w"]].min(axis=1)).all()
    assert 0.9 <= k["anc_performance_score"] <= 1.0
    for r in reg.itertuples():  # every payment is the rules' formula on the recorded rows
        assert 0 <= r.score_ppm <= PPM
        assert (r.capacity_amount, r.performance_amount) == regulation_amounts(
            capacity_w=r.capacity_w, mileage_w=r.mileage_w, score_ppm=r.score_ppm, interval_s=900,
            capacity_price_per_mw_h=40_000_000, performance_price_per_mw=2_000_000)
        assert r.amount == r.capacity_amount + r.performance_amount
    by_iv = reg.groupby("interval")[["capacity_amount", "performance_amount", "capacity_w"]].sum()
    s = settled.set_index("interval")
    assert (by_iv["capacity_amount"] == s["capacity_amount"]).all()
    assert (by_iv["capacity_w"] == s["procured_w"]).all()
    assert abs(reg["amount"].sum() / 1e6 - k["ancillary_revenue"]) < 1e-9
    # batteries: inside the SOC band, and the procured capacity was not sold on the market
    agents, sett = _t(out, "agents"), _t(out, "settlements")
    bat = agents[agents["kind"] == "storage"]
    assert bat["soc"].between(0.1 - 1e-9, 0.9 + 1e-9).all()
    power_wh = 30_000 * 900 / 3600
    traded = sett.set_index(["device_id", "interval"])["traded_wh"]
    assert {"storage", "ev"} <= set(reg["kind"])
    for r in reg[reg["kind"] != "flex"].itertuples():  # batteries 30 kW, chargers 11 kW
        t = abs(int(traded.get((r.device_id, r.interval), 0)))
        assert t + r.capacity_w * 900 / 3600 <= (power_wh if r.kind == "storage" else 2750) + 1
        # the meter reads the market energy plus the regulation energy (up = discharge)
    assert reg["delivered_wh"].abs().sum() > 0


def test_revenue_split_by_stream_adds_up(runs: dict[str, Path]) -> None:
    k = _kpis(runs["reference"])
    shares = [k[f"revenue_share_{s}"] for s in ("market", "demand_response", "ancillary")]
    assert abs(sum(shares) - 1) < 1e-9


def test_reserve_is_held_after_regulation_activated_and_paid_by_the_rules(runs: dict[str, Path]) -> None:
    out = runs["reference"]
    k = _kpis(out)
    rs, reg = _t(out, "reserve"), _t(out, "regulation")
    assert (rs["status"] == "settled").all() and set(rs["interval"]) == set(range(1, 8))
    assert set(rs.loc[rs["activated"], "interval"]) == {3, 6} and k["anc_reserve_activations"] == 2
    by_iv = rs.groupby("interval")["capacity_w"].sum()
    assert (by_iv <= 20_000).all() and (by_iv <= rs.groupby("interval")["offered_w"].first()).all()
    # activated: each battery delivers its whole capacity for the interval; else nothing
    act = rs[rs["activated"]]
    assert (act["energy_wh"] == (act["capacity_w"] * 900 // 3600)).all()
    assert (rs.loc[~rs["activated"], "energy_wh"] == 0).all()
    for r in rs.itertuples():
        assert (r.capacity_amount, r.energy_amount) == reserve_amounts(
            capacity_w=r.capacity_w, energy_wh=r.energy_wh, interval_s=900,
            capacity_price_per_mw_h=10_000_000, energy_price_per_mwh=150_000_000)
    assert abs(rs["amount"].sum() / 1e6 - k["anc_reserve_paid"]) < 1e-9
    # a battery's reserve sits on top of its regulation: both and its market sales fit its power
    traded = _t(out, "settlements").set_index(["device_id", "interval"])["traded_wh"]
    reg_w = reg[reg["kind"] == "storage"].set_index(["device_id", "interval"])["capacity_w"]
    for r in rs.itertuples():
        sold = max(0, -int(traded.get((r.device_id, r.interval), 0)))
        held_wh = (r.capacity_w + int(reg_w.get((r.device_id, r.interval), 0))) * 900 / 3600
        assert sold + held_wh <= 30_000 * 900 / 3600 + 1
