"""End to end: short quickstart runs with the pilot mechanisms — the green-token exchange
(EU Scanergy) with green currency for redeemed green kWh, and shared-charger tariffs
(Share&Charge) with green currency for renewable purchases and demand response — each once on
the reference ledger and once on a real Anvil: identical tables (but tx hashes) and KPIs,
every payment re-derived from the recorded rows, the token audit closed; and the scenario
errors for mechanisms that cannot coexist or assets the feeder lacks."""

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
from twin.scenario import ScenarioError

pytestmark = pytest.mark.slow

CURRENCY = {"enabled": True, "tokens_per_kwh_renewable": 1.0, "tokens_per_kwh_dr": 2.5}
CASES = {
    # 11:00-14:00: PV surplus for the exchange, consumption to redeem it against
    "exchange": dict(start="2016-06-15T11:00:00Z", duration_s=3 * 3600,
                     agents__tso__gap_threshold_kw=60.0,
                     market__services={"green_exchange": {"enabled": True, "buy_price_per_mwh": 90,
                                                          "sell_price_per_mwh": 110,
                                                          "rate_adjustment": 0.05},
                                       "green_currency": CURRENCY}),
    # 16:00-19:00: EVs arrive and charge at shared chargers; the tariff rises with the
    # network fee's peak at 17:00; the TSO calls demand response at the evening peak
    "chargers": dict(start="2016-06-15T16:00:00Z", duration_s=3 * 3600,
                     grid__tariff={"offpeak_fee_per_mwh": 0, "peak_fee_per_mwh": 50},
                     agents__tso__gap_threshold_kw=52.0,
                     market__services={"charger_tariffs": {"enabled": True, "shared_share": 0.5,
                                                           "tariff_min_per_mwh": 100,
                                                           "tariff_max_per_mwh": 340,
                                                           "host_markup": 0.3,
                                                           "driver_choice": True},
                                       "green_currency": CURRENCY,
                                       # the DSO charges its published fee in settlement
                                       "network_fee": {"enabled": True}}),
}
TABLES = {"exchange": ("green_exchange", "green_currency"),
          "chargers": ("charger_tariffs", "charging_sessions", "green_currency", "network_fees")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    tmp = tmp_path_factory.mktemp("pilots")
    out = {}
    for case, changes in CASES.items():
        for ledger in ("reference", "chain"):
            sc = quickstart_with(market__ledger=ledger, **changes)
            out[(case, ledger)] = tmp / f"{case}_{ledger}"
            run_scenario(sc, out_dir=out[(case, ledger)], progress=False)
    return out


def _t(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / f"{name}.parquet").to_pandas()


def _kpis(out: Path) -> dict[str, float]:
    k = json.loads((out / "kpis.json").read_text())
    k.pop("wall_time_s")
    for chain_only in ("gas_per_kwh", "chain_cost_per_kwh"):  # NA on the reference ledger
        k.pop(chain_only, None)
    return k


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_ledgers_give_identical_results(runs: dict[tuple[str, str], Path], case: str) -> None:
    ref, chain = runs[(case, "reference")], runs[(case, "chain")]
    for name in TABLES[case]:
        a, b = _t(ref, name), _t(chain, name)
        assert len(a) > 0, f"{name}: no rows — the run does not exercise the mechanism"
        assert (a["tx_hash"] == "").all() and (b["tx_hash"] != "").all()
        pd.testing.assert_frame_equal(a.drop(columns="tx_hash"), b.drop(columns="tx_hash"))
    assert _kpis(ref) == _kpis(chain)
    for out in (ref, chain):
        tokens = json.loads((out / "manifest.json").read_text())["tokens"]
        assert tokens["conserved"] and tokens["total_supply"] == tokens["minted"]
    value = json.loads((chain / "manifest.json").read_text())["chain"]["value_contracts"]
    expect = {"exchange": {"GreenTokenExchange", "GreenCurrency"},
              "chargers": {"ChargerTariffs", "GreenCurrency"}}[case]
    assert set(value) == expect
    expect |= {"SettlementToken"}  # network fees: plain token transfers to the DSO
    sent = dict(zip(*(_t(chain, "chain")[c] for c in ("tx_hash", "function")), strict=True))
    for name in TABLES[case]:  # every row names a transaction of its own contract
        assert all(sent[h].split(".")[0] in expect for h in _t(chain, name)["tx_hash"])


def test_green_exchange_run(runs: dict[tuple[str, str], Path]) -> None:
    out = runs[("exchange", "reference")]
    k = _kpis(out)
    assert k["orders"] == 0 and k["trades"] == 0  # the P2P auction takes no orders
    assert k["green_tokens_minted"] > 0 and k["green_tokens_redeemed"] > 0
    ge = _t(out, "green_exchange")
    agents = _t(out, "agents")
    meter = agents.set_index(["device_id", "time_s"])["metered_wh"]
    minted = ge[ge["action"] == "minted"]
    for r in minted.itertuples():  # metered PV injection
        assert r.energy_wh == -meter[(int(r.device_id), r.time_s)] > 0
    for _dev, g in minted.groupby("device_id"):  # whole kWh, the Wh remainder carried
        assert g["tokens"].sum() == g["energy_wh"].sum() // 1000
    sold, bought = ge[ge["action"] == "sold"], ge[ge["action"] == "bought"]
    # a market rate: every trade at the price the DSO posted then (fixed: 90 / 110 per MWh)
    assert (sold["amount"] == [payment(t * 1000, p) for t, p in
                               zip(sold["tokens"], sold["price_per_mwh"], strict=True)]).all()
    assert (bought["amount"] == [payment(t * 1000, p) for t, p in
                                 zip(bought["tokens"], bought["price_per_mwh"], strict=True)]).all()
    priced = ge[ge["action"] == "priced_buy"]
    assert len(priced) and sold["price_per_mwh"].nunique() > 1
    redeemed = ge[ge["action"] == "redeemed"]
    supply = minted["tokens"].sum() - redeemed["tokens"].sum()
    assert supply >= 0 and redeemed["tokens"].sum() <= sold["tokens"].sum()
    consumed = agents.groupby("device_id")["metered_wh"].agg(lambda w: w.clip(lower=0).sum())
    got = redeemed.groupby("device_id")["energy_wh"].sum()
    assert (got.to_numpy() <= consumed[got.index.astype(int)].to_numpy()).all()  # metered only
    gc = _t(out, "green_currency")  # green currency for the redeemed green kWh
    ren = gc[gc["reason"] == "renewable"]
    assert ren["energy_wh"].sum() == redeemed["energy_wh"].sum()
    assert (ren["amount"] == ren["energy_wh"] * 1000).all()  # 1 token (10**6) per kWh


def test_charger_tariff_run(runs: dict[tuple[str, str], Path]) -> None:
    out = runs[("chargers", "reference")]
    k = _kpis(out)
    assert k["charging_sessions"] > 0 and k["charging_paid"] > 0
    tariffs = _t(out, "charger_tariffs")
    # hosts' own prices: retail (+ peak fee) times 1 + up to 30 %, clamped to 100-340
    assert tariffs["price_per_mwh"].between(300_000_000, 340_000_000).all()
    assert tariffs.groupby("charger")["price_per_mwh"].first().nunique() > 2
    sessions = _t(out, "charging_sessions")
    paid = sessions[sessions["status"] == "paid"]
    assert (paid["amount"] == [payment(w, p) for w, p in
                                zip(paid["metered_wh"], paid["price_per_mwh"], strict=True)]).all()
    # the tariff in force at a session's start, even when it changed during the session
    peak = paid["interval"] >= 4  # 17:00
    assert (paid.loc[peak, "price_per_mwh"] == 340_000_000).all()
    assert paid.loc[~peak, "price_per_mwh"].between(300_000_000, 340_000_000).all()
    assert (paid["owner"] != paid["driver"]).all()  # visiting drivers pay the hosts
    agents = _t(out, "agents")
    meter = agents.set_index(["device_id", "time_s"])["metered_wh"]
    for s in paid.itertuples():  # a session's energy is the charger's metered consumption
        wh = sum(max(int(meter[(s.charger, t * 900)]), 0)
                 for t in range(s.interval, s.end_interval + 1))
        assert s.metered_wh == wh
    gc = _t(out, "green_currency")
    assert k["green_currency_dr_kwh"] > 0 and k["green_currency_renewable_kwh"] > 0
    trades = _t(out, "trades")
    ren = gc[gc["reason"] == "renewable"]
    assert ren["energy_wh"].sum() <= trades["energy_wh"].sum()
    assert (ren["amount"] == ren["energy_wh"] * 1000).all()
    dr = gc[gc["reason"] == "dr"]
    assert (dr["amount"] == dr["energy_wh"] * 2500).all()


def _errors(**changes: object) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as info:
        quickstart_with(**changes)
    return info.value.errors


def test_scenario_errors_name_the_fields(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = " ".join(f"{p}: {m}" for p, m in _errors(market__services={
        "green_exchange": {"enabled": True}, "certificates": {"enabled": True}}))
    assert "market.services.certificates.enabled: cannot be combined with " \
           "market.services.green_exchange" in text
    # the exchange was a matching rule once: naming it there is an error that says where it went
    errs = _errors(market__mechanism="green_exchange")
    assert errs[0][0] == "market.mechanism" and "market.services.green_exchange" in errs[0][1]
    errs = _errors(market__services={"p2p_bonus": {"enabled": True}})
    assert errs[0][0] == "market.services.p2p_bonus" and "unknown market service" in errs[0][1]
    text = " ".join(f"{p}: {m}" for p, m in _errors(agents__evs__count=0,
                                          market__services={"charger_tariffs": {"enabled": True}}))
    assert "market.services.charger_tariffs.enabled: no charger to share" in text
    text = " ".join(f"{p}: {m}" for p, m in _errors(market__services={"green_currency": {
        "enabled": True, "tokens_per_kwh_dr": 1.0}}))
    assert "market.services.green_currency.tokens_per_kwh_dr: no demand response" in text
    errs = _errors(market__services={"charger_tariffs": {"enabled": True,
                                                         "tariff_min_per_mwh": 500,
                                                         "tariff_max_per_mwh": 400}})
    assert errs[0][0] == "market.services.charger_tariffs"
    assert _errors(market__mechanism="p2p")[0][0] == "market.mechanism"
    data = yaml.safe_load(QUICKSTART.read_text())
    data["agents"]["households"]["pv"]["share"] = 0
    data["market"].setdefault("services", {})["green_exchange"] = {"enabled": True}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "market.services.green_exchange.enabled: the green exchange needs green sellers" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_network_fee_charges_the_published_tariff_in_settlement(
        runs: dict[tuple[str, str], Path]) -> None:
    """Each buying device pays the DSO the fee of the interval (0 before 17:00, 50/MWh from
    17:00) on the energy its trades delivered, from its free market balance."""
    out = runs[("chargers", "reference")]
    fees, trades = _t(out, "network_fees"), _t(out, "trades")
    assert len(fees) > 0 and (fees["interval"] >= 4).all()  # no fee before the 17:00 peak
    bought = trades[trades["interval"] >= 4].groupby(["interval", "buyer_device"])["energy_wh"].sum()
    bought = bought[bought > 0]
    got = fees.set_index(["interval", "device_id"])
    assert sorted(got.index) == sorted(i for i in bought.index if payment(int(bought[i]), 50_000_000))
    for (k, d), r in got.iterrows():
        assert r["energy_wh"] == bought[(k, d)] and r["fee_per_mwh"] == 50_000_000
        assert r["due"] == payment(int(r["energy_wh"]), 50_000_000)
        assert r["amount"] == r["due"] and r["status"] == "paid"
    k = _kpis(out)
    assert k["network_fee_charged"] == pytest.approx(fees["amount"].sum() / 1e6)
    assert k["network_fee_short"] == 0
