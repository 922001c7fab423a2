"""End to end: a short quickstart run with all three market services on (demand response,
green certificates, tokenized assets), once on the reference ledger and once on a real
Anvil: identical value-layer tables (but tx hashes) and KPIs, every payout re-derived from
the recorded meters, the token audit closed; and the CLI refusing services the scenario
cannot support."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from tests._quickstart import QUICKSTART, quickstart_with
from twin.cli import main
from twin.market.units import payment
from twin.run import run_scenario

pytestmark = pytest.mark.slow

VALUE_TABLES = ("dr_events", "dr_payouts", "certificates", "asset_distributions", "asset_claims")
SERVICES = {
    "demand_response": {"enabled": True, "baseline_intervals": 4},
    "certificates": {"enabled": True, "retire_share": 0.5},
    "assets": [{"asset": "community_storage_0", "investors": 3, "shares": 1000},
               {"asset": "household_1", "investors": 2, "shares": 7}],
}


def _run(tmp: Path, ledger: str) -> Path:
    # 14:00-18:00: PV still sells (certificates) and EVs start to plug in (DR payouts)
    sc = quickstart_with(start="2016-06-15T14:00:00Z", duration_s=4 * 3600, market__ledger=ledger,
                         agents__tso__gap_threshold_kw=5, market__services=SERVICES)
    out = tmp / ledger
    run_scenario(sc, out_dir=out, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("services")
    return {ledger: _run(tmp, ledger) for ledger in ("reference", "chain")}


def _t(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / f"{name}.parquet").to_pandas()


def _kpis(out: Path) -> dict[str, float]:
    return json.loads((out / "kpis.json").read_text())


def test_both_ledgers_give_identical_value_layer(runs: dict[str, Path]) -> None:
    ref, chain = runs["reference"], runs["chain"]
    for name in VALUE_TABLES:
        a, b = _t(ref, name), _t(chain, name)
        assert len(a) > 0, f"{name}: no rows — the run does not exercise the service"
        assert (a["tx_hash"] == "").all()
        pd.testing.assert_frame_equal(a.drop(columns="tx_hash"), b.drop(columns="tx_hash"))
    ka, kb = _kpis(ref), _kpis(chain)
    ka.pop("wall_time_s"), kb.pop("wall_time_s")
    assert kb.pop("gas_per_kwh") > 0 and kb.pop("chain_cost_per_kwh") > 0  # NA on the reference
    assert ka == kb
    for key in ("dr_paid", "dr_reduction_kwh", "certificates_issued", "certificates_retired",
                "asset_revenue_distributed", "asset_claimed"):
        assert ka[key] > 0, key
    assert ka["tokens_conserved"] == 1.0


def test_chain_rows_carry_the_transactions_that_moved_value(runs: dict[str, Path]) -> None:
    out = runs["chain"]
    txs = _t(out, "chain")
    sent = dict(zip(txs["tx_hash"], txs["function"], strict=True))
    expect = {"dr_events": "postEvent", "dr_payouts": "settleEvent", "asset_distributions": "distribute"}
    for name, fn in expect.items():
        t = _t(out, name)
        t = t[t["amount" if "amount" in t else "budget"] > 0]
        assert len(t) and all(sent[h].endswith(fn) for h in t["tx_hash"]), name
    certs = _t(out, "certificates")
    for action, fn in (("issued", "issue"), ("retired", "retire")):
        hashes = certs.loc[(certs["action"] == action) & (certs["count"] > 0), "tx_hash"]
        assert len(hashes) and all(sent[h].endswith(fn) for h in hashes), action
    claims = _t(out, "asset_claims")
    assert all(sent[h].endswith("claim") for h in claims.loc[claims["amount"] > 0, "tx_hash"])
    manifest = json.loads((out / "manifest.json").read_text())
    value = manifest["chain"]["value_contracts"]
    assert {"DemandResponse", "GreenCertificate", "AssetToken:storage_0",
            "AssetToken:household_1"} == set(value)
    for name in ("DemandResponse", "GreenCertificate", "AssetToken"):
        assert json.loads((out / "abi" / f"{name}.json").read_text())
    bonds = manifest["chain"]["imbalance_bond"]  # each device's bond: two intervals at its rating
    assert bonds == json.loads((runs["reference"] / "manifest.json").read_text())["chain"]["imbalance_bond"]
    assert (bonds["floor"], bonds["intervals"], bonds["true_up_expiry_s"]) == (0, 2, 96 * 900)
    assert len(bonds["by_capacity_w"]) > 1 and all(
        b == payment(int(c) * 900 // 3600 * 2, 300_000_000) for c, b in bonds["by_capacity_w"].items())
    tokens = manifest["tokens"]
    assert tokens["conserved"] and tokens["total_supply"] == tokens["minted"]
    assert tokens["wallets"] + tokens["market_holdings"] + tokens["value_holdings"] == tokens["minted"]


def test_dr_payouts_follow_the_recorded_meters(runs: dict[str, Path]) -> None:
    out = runs["reference"]
    agents = _t(out, "agents")
    meter = {(int(r.device_id), int(r.time_s) // 900): int(r.metered_wh) for r in agents.itertuples()}
    events = _t(out, "dr_events").set_index("event_id")
    for p in _t(out, "dr_payouts").itertuples():
        past = [meter[(p.device_id, p.interval - j)] for j in range(1, 5) if p.interval - j >= 0]
        base = sum(past) // len(past)
        assert p.baseline_wh == base and p.metered_wh == meter[(p.device_id, p.interval)]
        assert p.reduction_wh == min(max(base - p.metered_wh, 0), p.committed_wh)
        assert p.amount == payment(p.reduction_wh, int(events.loc[p.event_id, "price_per_mwh"]))
    events = events[events["status"] == "settled"]
    assert (events["paid"] + events["refund"] == events["budget"]).all()
    assert (events["committed_wh"] <= events["target_wh"]).all()


def test_certificates_never_exceed_metered_renewable_delivery(runs: dict[str, Path]) -> None:
    out = runs["reference"]
    certs = _t(out, "certificates")
    issued = certs[certs["action"] == "issued"]
    trades = _t(out, "trades").set_index("trade_id")
    settle = _t(out, "settlements").set_index(["interval", "device_id"])
    for (k, seller), g in issued.groupby(["interval", "seller_device"]):
        injected = max(0, -int(settle.loc[(k, seller), "metered_wh"]))
        assert g["delivered_wh"].sum() <= injected
        assert (g["delivered_wh"].to_numpy() <= trades.loc[g["trade_id"], "energy_wh"].to_numpy()).all()
    for _seller, g in issued.groupby("seller_device"):  # Wh remainders carried, never rounded up
        assert g["count"].sum() == g["delivered_wh"].sum() // 1000
    retired = certs[certs["action"] == "retired"].groupby("holder")["count"].sum()
    received = issued.groupby("holder")["count"].sum()
    assert (retired <= (received[retired.index] * 0.5).astype(int)).all()


def test_asset_revenue_is_the_devices_settlement_credit_shared_pro_rata(runs: dict[str, Path]) -> None:
    out = runs["reference"]
    dist = _t(out, "asset_distributions")
    settle = _t(out, "settlements")
    claims = _t(out, "asset_claims")
    for asset, g in dist.groupby("asset"):
        device = int(g["device_id"].iloc[0])
        s = settle[settle["device_id"] == device]
        credit = s["trade_amount"].clip(lower=0) + s["imbalance_amount"].clip(lower=0)
        assert g["revenue"].sum() == credit.sum() and (g["amount"] <= g["revenue"]).all()
        c = claims[claims["asset"] == asset]
        total, paid = int(c["shares"].sum()), int(g["amount"].sum())
        for r in c.itertuples():
            assert paid * r.shares // total - len(g) <= r.amount <= paid * r.shares // total
        assert 0 <= paid - c["amount"].sum() < len(g) + len(c)  # dust: floor rounding only


def test_cli_refuses_services_the_feeder_cannot_support(tmp_path: Path, capsys) -> None:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["market"]["services"] = {"demand_response": {"enabled": True},
                                  "assets": [{"asset": "storage_4", "investors": 2}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "market.services.demand_response.enabled: demand response needs a TSO" in err
    assert "market.services.assets.0.asset: the scenario has no agent 'storage_4'" in err
    assert not (tmp_path / "out").exists()
