"""twin.kpis.metrics on hand-made tables: each KPI against a value worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from twin.kpis.metrics import (
    KPI_COLUMNS,
    RunInputs,
    consumer_cost,
    energy_not_served_kwh,
    feeder_kpis,
    game_kpis,
    gas_per_kwh,
    gini,
    net_benefits,
    peak_import_kw,
    prosumer_revenue,
    self_sufficiency,
    service_income,
    voltage_violations,
)
from twin.results import SCHEMAS

RETAIL = 300_000_000  # 300 per MWh in micro-units
FEED_IN = 80_000_000


def _table(name: str, rows: list[dict[str, object]]) -> pa.Table:
    schema = SCHEMAS[name]
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def _settle(owner: int, metered_wh: int, traded_wh: int, trade_amount: int, imbalance_amount: int,
            debt: int = 0) -> dict[str, object]:
    return {"time_s": 900, "interval": 1, "device_id": owner, "owner": owner, "traded_wh": traded_wh,
            "metered_wh": metered_wh, "imbalance_wh": metered_wh - traded_wh,
            "trade_amount": trade_amount, "imbalance_amount": imbalance_amount, "debt": debt}


def _gini_pairs(x: list[float]) -> float:
    """The definition itself: sum_ij |x_i - x_j| / (2 n sum |x|)."""
    n = len(x)
    return sum(abs(a - b) for a in x for b in x) / (2 * n * sum(abs(a) for a in x))


@pytest.mark.parametrize(("values", "expected"), [
    ([5.0, 5.0, 5.0, 5.0], 0.0),  # perfect equality
    ([0.0, 0.0, 0.0, 1.0], 0.75),  # one takes all: (n - 1) / n
    ([1.0, 2.0, 3.0, 4.0], 0.25),  # sum|xi-xj| = 20, 2*4*10 = 80
    ([-1.0, 1.0], 0.5),  # mixed signs: |x|-normalised, still in [0, 1]
    ([0.0, 0.0], 0.0),  # nobody gains: equal
])
def test_gini_of_known_vectors(values: list[float], expected: float) -> None:
    assert gini(values) == pytest.approx(expected)


def test_gini_matches_its_definition_and_stays_in_the_unit_interval() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.normal(size=int(rng.integers(2, 30))).tolist()
        g = gini(x)
        assert g == pytest.approx(_gini_pairs(x))
        assert 0.0 <= g <= 1.0
    assert math.isnan(gini([]))


def test_grid_kpis_peak_import_and_self_sufficiency() -> None:
    grid = _table("grid", [
        {"time_s": 0, "ext_grid_p_mw": 0.030, "load_p_mw": 0.040, "sgen_p_mw": 0.010},
        {"time_s": 900, "ext_grid_p_mw": -0.020, "load_p_mw": 0.020, "sgen_p_mw": 0.040},
        {"time_s": 1800, "ext_grid_p_mw": 0.045, "load_p_mw": 0.050, "sgen_p_mw": 0.005},
    ])
    assert peak_import_kw(grid) == pytest.approx(45.0)
    # imports 0.030 + 0.045 of consumption 0.110 (exports are not negative imports)
    assert self_sufficiency(grid) == pytest.approx(1 - 0.075 / 0.110)
    exporting = _table("grid", [{"time_s": 0, "ext_grid_p_mw": -0.01, "load_p_mw": 0.0, "sgen_p_mw": 0.01}])
    assert peak_import_kw(exporting) == 0.0
    assert math.isnan(self_sufficiency(exporting))


def test_voltage_violations_and_energy_not_served() -> None:
    rows = [{"time_s": t, "bus": b, "vm_pu": vm, "p_mw": p}
            for t, b, vm, p in [(0, 0, 1.00, 0.0), (0, 1, 0.94, 0.01), (0, 2, 1.06, -0.02),
                                (900, 0, 1.00, 0.0), (900, 1, 0.95, 0.01), (900, 2, 1.05, 0.0),
                                (1800, 1, None, 0.012), (1800, 2, None, -0.004)]]
    bus = _table("bus", rows)
    # 0.94 and 1.06 are outside [0.95, 1.05]; the band edges are inside; no-voltage rows are ENS
    assert voltage_violations(bus, vm_min_pu=0.95, vm_max_pu=1.05) == 2
    # 12 kW of load for one 15-min interval without voltage = 3 kWh (generation does not count)
    assert energy_not_served_kwh(bus, interval_s=900) == pytest.approx(3.0)


def _two_households() -> pa.Table:
    # owner 2 buys 1 kWh at 200/MWh (pays 0.2) and 0.5 kWh more at retail (0.15), debt 0.05 unpaid;
    # owner 3 sells 1 kWh at 200/MWh (gets 0.2) and 1 kWh surplus at feed-in (0.08);
    # owner 1 (the DSO) is never a participant
    return _table("settlements", [
        _settle(2, 1500, 1000, -200_000, -100_000, debt=50_000),
        _settle(3, -2000, -1000, 200_000, 80_000),
        _settle(1, 0, 0, 0, 0),
    ])


def test_money_kpis_and_net_benefit_against_the_tariff_baseline() -> None:
    s = _two_households()
    assert prosumer_revenue(s) == pytest.approx(0.28)
    assert consumer_cost(s) == pytest.approx(0.35)  # 0.2 + 0.1 paid + 0.05 owed
    nb = net_benefits(s, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN)
    # baseline: owner 2 pays 1.5 kWh at 300 = 0.45; owner 3 gets 2 kWh at 80 = 0.16
    assert nb == pytest.approx({2: -0.35 + 0.45, 3: 0.28 - 0.16})
    with_dr = net_benefits(s, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
                           service_income={2: 30_000, 1: 999})
    assert with_dr[2] == pytest.approx(0.13) and 1 not in with_dr


def _service_tables() -> dict[str, pa.Table]:
    return {
        "dr_payouts": _table("dr_payouts", [{"owner": 4, "amount": 700}, {"owner": 5, "amount": 300}]),
        "asset_distributions": _table("asset_distributions", [{"issuer": 6, "amount": 1000, "asset": "storage_0"}]),
        "asset_claims": _table("asset_claims", [{"holder": 7, "amount": 600}, {"holder": 8, "amount": 399}]),
        # the DSO buys 2 tokens (2 kWh) from 3 and sells 1 to 2; minting and redeeming move no money
        "green_exchange": _table("green_exchange", [
            {"action": "minted", "account": 3, "tokens": 2, "energy_wh": 2100, "amount": 0},
            {"action": "sold", "account": 3, "tokens": 2, "energy_wh": 2000, "amount": 200_000},
            {"action": "bought", "account": 2, "tokens": 1, "energy_wh": 1000, "amount": 120_000},
            {"action": "redeemed", "account": 2, "tokens": 1, "energy_wh": 1000, "amount": 0}]),
        # driver 5 pays host 4 for 500 Wh charged
        "charging_sessions": _table("charging_sessions", [
            {"owner": 4, "driver": 5, "metered_wh": 500, "amount": 150_000, "status": "paid"}]),
    }


def test_service_income_signs() -> None:
    got = service_income(_service_tables())
    assert got == {4: 700 + 150_000, 5: 300 - 150_000, 6: -1000, 7: 600, 8: 399, 3: 200_000, 2: -120_000}


def test_services_paying_for_energy_count_as_revenue_cost_and_service_energy() -> None:
    inputs = RunInputs(interval_s=900, vm_min_pu=0.95, vm_max_pu=1.05, retail_price_per_mwh=RETAIL,
                       feed_in_price_per_mwh=FEED_IN, ledger="reference")
    plain = feeder_kpis({"settlements": _two_households()}, inputs=inputs)
    k = feeder_kpis({"settlements": _two_households(), **_service_tables()}, inputs=inputs)
    # tokens sold (0.2) and the hosted session (0.15) are revenue; tokens bought (0.12) and the
    # session paid (0.15) are cost; DR pay and asset money are income only
    assert k["prosumer_revenue"] == pytest.approx(plain["prosumer_revenue"] + 0.35)
    assert k["consumer_cost"] == pytest.approx(plain["consumer_cost"] + 0.27)
    assert k["energy_traded_kwh"] == 0.0  # P2P only: these tables hold no trades
    assert k["service_energy_kwh"] == pytest.approx(2.5)  # 2 kWh of tokens + 0.5 kWh charged
    assert k["service_income"] == pytest.approx(sum(service_income(_service_tables()).values()) / 1e6)
    assert k["participants"] == 7  # owners 2, 3 and the service-only accounts 4..8


def test_gas_is_na_on_the_reference_ledger() -> None:
    chain = _table("chain", [{"gas_used": 21_000}, {"gas_used": 79_000}])
    assert gas_per_kwh(chain, traded_kwh=4.0, ledger="chain") == 25_000
    assert math.isnan(gas_per_kwh(chain, traded_kwh=4.0, ledger="reference"))
    assert math.isnan(gas_per_kwh(chain, traded_kwh=0.0, ledger="chain"))


def test_feeder_kpis_together() -> None:
    inputs = RunInputs(interval_s=900, vm_min_pu=0.95, vm_max_pu=1.05, retail_price_per_mwh=RETAIL,
                       feed_in_price_per_mwh=FEED_IN, ledger="reference")
    tables = {
        "settlements": _two_households(),
        "trades": _table("trades", [{"energy_wh": 1000, "price_per_mwh": 200_000_000}]),
        "market": _table("market", [{"curtailed_wh": 250}, {"curtailed_wh": 750}]),
        "grid": _table("grid", [{"ext_grid_p_mw": 0.01, "load_p_mw": 0.02}]),
    }
    k = feeder_kpis(tables, inputs=inputs)
    assert set(k) == set(KPI_COLUMNS)
    assert k["curtailed_kwh"] == 1.0
    assert k["energy_traded_kwh"] == 1.0
    assert k["consumer_cost_per_mwh"] == pytest.approx(0.35 / 1.5e-3)
    assert k["prosumer_revenue_per_mwh"] == pytest.approx(0.28 / 2e-3)
    assert k["net_benefit"] == pytest.approx(0.1 + 0.12)
    assert k["fairness_gini"] == pytest.approx(_gini_pairs([0.1, 0.12]))
    assert k["participants"] == 2
    assert math.isnan(k["gas_per_kwh"]) and math.isnan(k["chain_cost_per_kwh"])
    assert k["voltage_violations"] == 0 and k["energy_not_served_kwh"] == 0  # no bus table


def test_game_kpis_map_what_exists() -> None:
    units = _table("game_units", [{"unit": "A", "shapley_value": 3.0, "revenue": 5_000_000},
                                  {"unit": "B", "shapley_value": 1.0, "revenue": 3_000_000}])
    s = _table("settlements", [_settle(2, -1000, -1000, 5_000_000, 0), _settle(3, -600, -600, 3_000_000, 0),
                               _settle(4, 1600, 1600, -8_000_000, 0)])
    k = game_kpis({"game_units": units, "settlements": s})
    assert k["prosumer_revenue"] == 8.0 and k["consumer_cost"] == 8.0
    assert k["fairness_gini"] == pytest.approx(_gini_pairs([3.0, 1.0]))
    for na in ("self_sufficiency", "peak_import_kw", "voltage_violations", "gas_per_kwh", "net_benefit"):
        assert math.isnan(k[na]), na
