"""The KPIs of ``twin compare``: one definition for every scenario, from its Parquet tables.

Pure functions over Arrow tables (no file access; :mod:`twin.compare` reads the run folders).
Every market design is judged by the same numbers, computed the same way from the tables
every feeder run writes (``grid``, ``bus``, ``market``, ``settlements``, ``trades``,
``chain``), so a pilot cannot look better because its own KPI code is kinder:

* ``self_sufficiency`` -- ``1 - import / consumption`` over the ``grid`` table (as
  :mod:`twin.kpis`): the share of the feeder's consumption not drawn from upstream.
* ``prosumer_revenue`` -- money (currency units) received for energy sold: positive
  ``trade_amount`` of settlement rows, the feed-in paid by the DSO for surplus, and service
  money paid for energy (green tokens sold, charging sessions hosted).
  ``prosumer_revenue_per_mwh`` divides it by the energy injected (negative metered Wh).
* ``consumer_cost`` -- money paid for energy bought: negative ``trade_amount``, the retail
  paid to the DSO for the shortfall (unpaid debt included) and service money paid for energy
  (green tokens bought, charging sessions). ``consumer_cost_per_mwh`` divides
  it by the energy consumed (positive metered Wh). Feeders differ in size, so compare the
  per-MWh figures across pilots, the totals within one feeder.
* ``service_income`` -- net money market services moved to participants outside the market's
  settlement (:data:`SERVICE_FLOWS`: demand-response pay, asset-token revenue, green tokens
  sold to / bought from the DSO, charging sessions paid by drivers to hosts). Money that pays
  for energy (green tokens, charging) also counts in prosumer revenue / consumer cost, and its
  energy in ``energy_traded_kwh``. Green-currency rewards are tokens, not money: not counted.
* ``net_benefit`` -- the sum over participants of their money with the market (trades,
  imbalance, services) minus their money under the *no-market tariff baseline*: every
  metered Wh bought at the retail tariff, every injected Wh paid at the feed-in tariff (the
  billing counterfactual: same meter readings, no local market).
* ``peak_import_kw`` -- highest upstream import of one interval (``grid.ext_grid_p_mw``).
* ``dso_curtailment_kwh`` -- energy of cleared trades the DSO curtailed (``market.curtailed_wh``).
* ``voltage_violations`` -- bus-intervals with a voltage outside ``[vm_min_pu, vm_max_pu]``
  (buses without a voltage are counted in energy not served, not here).
* ``energy_not_served_kwh`` -- load at buses without a voltage (de-energized, or an unsolved
  power flow), interval energy.
* ``energy_traded_kwh`` -- local-market trades plus the energy of service flows that pay for
  energy (green tokens sold to the DSO, charging sessions).
* ``gas_per_kwh`` and ``chain_cost_per_kwh`` -- gas of every ledger transaction of the run
  (``chain`` table: deployment and registration included) per kWh traded, and its cost at a stated gas price and native-coin price (currency
  per kWh). NaN (NA) on the reference ledger: it has no chain, so no gas.
* ``fairness_gini`` -- Gini coefficient of the participants' net benefits. Net benefits can be
  negative, so the Gini is normalised by the mean *absolute* value,
  ``G = sum_ij |x_i - x_j| / (2 n sum_i |x_i|)``: the usual Gini for non-negative values,
  and always in [0, 1] (0: everyone gains the same). A participant is a settlement owner
  (account) other than the operator and the DSO.

A cooperative-game scenario (``game:``) has no feeder: its KPIs are mapped from its tables
(``game_units``, ``settlements``, ``trades``) where a meaning exists -- prosumer revenue is the
units' market revenue, consumer cost the buyer's bill, fairness the Gini of the units'
Shapley payoffs (their net benefit against not trading, which is 0) -- and NaN elsewhere.
With ``game.grid`` (the DSO security check, ``game_security`` table) the grid KPIs are the
grand coalition's power flow at the game's hour: peak import = its upstream import (kW),
voltage violations = its buses outside the band, DSO curtailment = the trade's energy if the
check rejected it (else 0), energy not served = the trade's energy if its flow did not
converge (else 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from twin.market.units import MICRO, WH_PER_MWH

__all__ = [
    "KPI_COLUMNS",
    "KPI_NOTES",
    "ChainPricing",
    "RunInputs",
    "ServiceFlow",
    "consumer_cost",
    "dso_curtailment_kwh",
    "energy_not_served_kwh",
    "feeder_kpis",
    "game_kpis",
    "gas_per_kwh",
    "gini",
    "net_benefits",
    "peak_import_kw",
    "prosumer_revenue",
    "self_sufficiency",
    "service_flows",
    "service_income",
    "voltage_violations",
]

#: accounts that are not participants (twin.market: 0 operator, 1 DSO)
NON_PARTICIPANTS = frozenset({0, 1})

#: The compared KPIs, in table order.
KPI_COLUMNS = (
    "self_sufficiency", "prosumer_revenue", "prosumer_revenue_per_mwh", "consumer_cost",
    "consumer_cost_per_mwh", "service_income", "net_benefit", "peak_import_kw",
    "dso_curtailment_kwh", "voltage_violations", "energy_not_served_kwh", "energy_traded_kwh",
    "gas_per_kwh", "chain_cost_per_kwh", "fairness_gini", "participants",
)

#: One line per KPI: unit and meaning (the header notes of compare.md).
KPI_NOTES = {
    "self_sufficiency": "share of consumption not imported (0..1)",
    "prosumer_revenue": "money received for energy sold (market, feed-in, green tokens, charging), currency",
    "prosumer_revenue_per_mwh": "prosumer revenue per MWh injected, currency/MWh",
    "consumer_cost": "money paid for energy bought (market, retail, green tokens, charging), currency",
    "consumer_cost_per_mwh": "consumer cost per MWh consumed, currency/MWh",
    "service_income": "net money market services moved to participants (DR, assets, green tokens, charging), currency",
    "net_benefit": "sum of participants' gain vs the no-market tariff baseline, currency",
    "peak_import_kw": "highest upstream import of one interval, kW",
    "dso_curtailment_kwh": "cleared trade energy curtailed by the DSO security check, kWh",
    "voltage_violations": "bus-intervals outside the voltage band",
    "energy_not_served_kwh": "load at buses without voltage, kWh",
    "energy_traded_kwh": "energy traded: local market, green tokens sold, charging sessions, kWh",
    "gas_per_kwh": "gas of all ledger transactions per kWh traded (NA: reference ledger)",
    "chain_cost_per_kwh": "that gas at the stated gas and coin prices, currency/kWh (NA: reference ledger)",
    "fairness_gini": "Gini of per-participant net benefit (0 = equal; normalised by mean absolute value)",
    "participants": "accounts that settled (operator and DSO excluded)",
}

NA = float("nan")


@dataclass(frozen=True)
class ChainPricing:
    """What one unit of gas costs: ``gas_price_gwei`` (1e-9 native coin per gas) times the
    native coin's price in currency units."""

    gas_price_gwei: float = 1.0
    native_price: float = 2000.0

    def cost_per_gas(self) -> float:
        return self.gas_price_gwei * 1e-9 * self.native_price


@dataclass(frozen=True)
class RunInputs:
    """The scenario facts the KPIs need (from the run's manifest)."""

    interval_s: int
    vm_min_pu: float
    vm_max_pu: float
    retail_price_per_mwh: int  # micro-units per MWh
    feed_in_price_per_mwh: int  # micro-units per MWh
    ledger: str  # "chain" | "reference"


def _col(table: pa.Table, name: str) -> np.ndarray:
    """A column as a float numpy array (nulls -> NaN); empty when the table is empty."""
    if table.num_rows == 0:
        return np.zeros(0)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def _icol(table: pa.Table, name: str) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(table.column(name).fill_null(0).to_numpy(), dtype=np.int64)


def gini(values: np.ndarray | list[float]) -> float:
    """Gini of ``values`` normalised by the mean absolute value (in [0, 1]); NaN if empty,
    0 if all are zero."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return NA
    scale = 2.0 * x.size * np.abs(x).sum()
    if scale == 0.0:
        return 0.0
    s = np.sort(x)
    # sum_ij |x_i - x_j| = 2 sum_i (2 i - n + 1) s_i for sorted s (i from 0)
    i = np.arange(s.size)
    return float(2.0 * np.sum((2 * i - s.size + 1) * s) / scale)


def self_sufficiency(grid: pa.Table) -> float:
    """``1 - import / consumption`` over the ``grid`` table (NaN without consumption)."""
    imp = np.clip(_col(grid, "ext_grid_p_mw"), 0.0, None).sum()
    cons = np.clip(_col(grid, "load_p_mw"), 0.0, None).sum()
    return float(max(0.0, 1.0 - imp / cons)) if cons > 0 else NA


def peak_import_kw(grid: pa.Table) -> float:
    """Highest upstream import of one interval, kW (0 if the feeder only exports)."""
    p = _col(grid, "ext_grid_p_mw")
    p = p[np.isfinite(p)]
    return float(max(p.max(), 0.0) * 1000.0) if p.size else NA


def dso_curtailment_kwh(market: pa.Table) -> float:
    return float(_icol(market, "curtailed_wh").sum() / 1000.0)


def voltage_violations(bus: pa.Table, *, vm_min_pu: float, vm_max_pu: float) -> int:
    """Bus-intervals with a voltage outside ``[vm_min_pu, vm_max_pu]`` (NaN voltages excluded)."""
    vm = _col(bus, "vm_pu")
    vm = vm[np.isfinite(vm)]
    return int(np.count_nonzero((vm < vm_min_pu) | (vm > vm_max_pu)))


def energy_not_served_kwh(bus: pa.Table, *, interval_s: int) -> float:
    """Load (positive bus ``p_mw``) at buses without a voltage, as interval energy in kWh."""
    vm = _col(bus, "vm_pu")
    p = _col(bus, "p_mw")
    dark = ~np.isfinite(vm) & np.isfinite(p)
    return float(np.clip(p[dark], 0.0, None).sum() * interval_s / 3.6)


def gas_per_kwh(chain: pa.Table, *, traded_kwh: float, ledger: str) -> float:
    """Gas of every ledger transaction per kWh traded; NaN on the reference ledger or
    without trades."""
    if ledger != "chain" or traded_kwh <= 0:
        return NA
    return float(_icol(chain, "gas_used").sum() / traded_kwh)


def _payment(energy_wh: np.ndarray, price: int) -> np.ndarray:
    return (energy_wh * price) // WH_PER_MWH  # twin.market.units.payment, vectorized


def _owner_money(s: pa.Table) -> np.ndarray:
    """Money each settlement row moved for its owner (micro-units), unpaid debt included."""
    imb = _icol(s, "imbalance_wh")
    debt = _icol(s, "debt")
    # debt: owed by the owner when imbalance > 0, owed to the owner when imbalance < 0
    return _icol(s, "trade_amount") + _icol(s, "imbalance_amount") + np.where(imb > 0, -debt, debt)


def prosumer_revenue(settlements: pa.Table) -> float:
    """Money received for energy sold (currency): trade sales and feed-in for surplus."""
    trade = _icol(settlements, "trade_amount")
    imb = _icol(settlements, "imbalance_amount")
    return float((np.clip(trade, 0, None).sum() + np.clip(imb, 0, None).sum()) / MICRO)


def consumer_cost(settlements: pa.Table) -> float:
    """Money paid for energy bought (currency): trade purchases and retail for the shortfall
    (debt the owner could not pay included)."""
    trade = _icol(settlements, "trade_amount")
    imb = _icol(settlements, "imbalance_amount")
    debt = np.where(_icol(settlements, "imbalance_wh") > 0, _icol(settlements, "debt"), 0)
    return float((-np.clip(trade, None, 0).sum() - np.clip(imb, None, 0).sum() + debt.sum()) / MICRO)


def net_benefits(settlements: pa.Table, *, retail_price_per_mwh: int, feed_in_price_per_mwh: int,
                 service_income: Mapping[int, int] | None = None) -> dict[int, float]:
    """Owner account -> net benefit (currency) against the no-market tariff baseline.

    Market money = trades + imbalance (+ service income, micro-units per owner); baseline
    money = every positive metered Wh bought at retail, every injected Wh paid at feed-in.
    Operator and DSO are not participants.
    """
    owner = _icol(settlements, "owner")
    metered = _icol(settlements, "metered_wh")
    baseline = np.where(metered > 0, -_payment(np.clip(metered, 0, None), retail_price_per_mwh),
                        _payment(np.clip(-metered, 0, None), feed_in_price_per_mwh))
    gain = _owner_money(settlements) - baseline
    out: dict[int, int] = {}
    for o, g in zip(owner.tolist(), gain.tolist(), strict=True):
        if o not in NON_PARTICIPANTS:
            out[o] = out.get(o, 0) + g
    for o, amount in (service_income or {}).items():
        if o not in NON_PARTICIPANTS:
            out[o] = out.get(o, 0) + int(amount)
    return {o: v / MICRO for o, v in sorted(out.items())}


@dataclass(frozen=True)
class ServiceFlow:
    """Money a market service moves to (``sign`` +1) or from (-1) the account in column
    ``account`` of its results table, ``amount`` micro-units, on rows where ``where`` (column,
    value) holds. ``energy``: the money pays for energy (green tokens, charging sessions), so it
    counts in prosumer revenue / consumer cost too; else it is other income (DR pay, assets)."""

    account: str
    amount: str
    sign: int
    energy: bool = False
    where: tuple[str, str] | None = None
    #: column of the energy (Wh) this money paid for, counted as traded (one flow per transfer)
    energy_wh: str | None = None


#: Money that market services move outside the market's settlement, per results table. Only
#: the tables a run wrote are read. Asset tokens: the issuer hands its asset's revenue to the
#: contract (``asset_distributions``), the investors claim it (``asset_claims``); the share
#: purchase price is not modelled, so investors' net benefit is their claims. Green exchange:
#: the DSO pays for the tokens prosumers sell and is paid for the tokens consumers buy.
#: Charging sessions: the driver pays the charger's host. Green currency is an incentive
#: token, not money: it is not counted.
SERVICE_FLOWS: dict[str, tuple[ServiceFlow, ...]] = {
    "dr_payouts": (ServiceFlow("owner", "amount", +1),),
    "asset_distributions": (ServiceFlow("issuer", "amount", -1),),
    "asset_claims": (ServiceFlow("holder", "amount", +1),),
    "green_exchange": (ServiceFlow("account", "amount", +1, True, ("action", "sold"), "energy_wh"),
                       ServiceFlow("account", "amount", -1, True, ("action", "bought"))),
    "charging_sessions": (ServiceFlow("owner", "amount", +1, True, None, "metered_wh"),
                          ServiceFlow("driver", "amount", -1, True)),
}


def service_flows(tables: Mapping[str, pa.Table]) -> list[tuple[int, int, bool, int]]:
    """Every service money movement as ``(account, signed micro-units, pays for energy,
    energy Wh it paid for (0 unless counted here))``."""
    out: list[tuple[int, int, bool, int]] = []
    for name, flows in SERVICE_FLOWS.items():
        t = tables.get(name)
        if t is None or t.num_rows == 0:
            continue
        for f in flows:
            keep = np.ones(t.num_rows, dtype=bool)
            if f.where is not None:
                keep = np.asarray(t.column(f.where[0]).to_pylist(), dtype=object) == f.where[1]
            accounts, amounts = _icol(t, f.account)[keep], _icol(t, f.amount)[keep]
            wh = _icol(t, f.energy_wh)[keep] if f.energy_wh else np.zeros(accounts.size, np.int64)
            out += [(a, f.sign * v, f.energy, e) for a, v, e in
                    zip(accounts.tolist(), amounts.tolist(), wh.tolist(), strict=True)]
    return out


def service_income(tables: Mapping[str, pa.Table]) -> dict[int, int]:
    """Account -> net money (micro-units) that market services moved to it."""
    out: dict[int, int] = {}
    for a, v, _, _ in service_flows(tables):
        out[a] = out.get(a, 0) + v
    return out


def feeder_kpis(tables: Mapping[str, pa.Table], *, inputs: RunInputs,
                pricing: ChainPricing = ChainPricing()) -> dict[str, float]:
    """The compared KPIs of a feeder run from its tables (missing tables -> empty)."""
    def t(name: str) -> pa.Table:
        return tables.get(name, pa.table({}))

    s = t("settlements")
    metered = _icol(s, "metered_wh")
    traded_kwh = float(_icol(t("trades"), "energy_wh").sum() / 1000.0)
    injected_mwh = float(np.clip(-metered, 0, None).sum() / WH_PER_MWH)
    consumed_mwh = float(np.clip(metered, 0, None).sum() / WH_PER_MWH)
    all_flows = service_flows(tables)
    traded_kwh += sum(wh for *_, wh in all_flows) / 1000.0
    flows = [(a, v, e) for a, v, e, _ in all_flows if a not in NON_PARTICIPANTS]
    rev = prosumer_revenue(s) + sum(v for _, v, e in flows if e and v > 0) / MICRO
    cost = consumer_cost(s) - sum(v for _, v, e in flows if e and v < 0) / MICRO
    income: dict[int, int] = {}
    for a, v, _ in flows:
        income[a] = income.get(a, 0) + v
    benefits = net_benefits(s, retail_price_per_mwh=inputs.retail_price_per_mwh,
                            feed_in_price_per_mwh=inputs.feed_in_price_per_mwh,
                            service_income=income)
    gas = gas_per_kwh(t("chain"), traded_kwh=traded_kwh, ledger=inputs.ledger)
    return {
        "self_sufficiency": self_sufficiency(t("grid")),
        "prosumer_revenue": rev,
        "prosumer_revenue_per_mwh": rev / injected_mwh if injected_mwh > 0 else NA,
        "consumer_cost": cost,
        "consumer_cost_per_mwh": cost / consumed_mwh if consumed_mwh > 0 else NA,
        "service_income": sum(income.values()) / MICRO,
        "net_benefit": float(sum(benefits.values())),
        "peak_import_kw": peak_import_kw(t("grid")),
        "dso_curtailment_kwh": dso_curtailment_kwh(t("market")),
        "voltage_violations": float(voltage_violations(t("bus"), vm_min_pu=inputs.vm_min_pu,
                                                       vm_max_pu=inputs.vm_max_pu)),
        "energy_not_served_kwh": energy_not_served_kwh(t("bus"), interval_s=inputs.interval_s),
        "energy_traded_kwh": traded_kwh,
        "gas_per_kwh": gas,
        "chain_cost_per_kwh": gas * pricing.cost_per_gas() if np.isfinite(gas) else NA,
        "fairness_gini": gini(list(benefits.values())),
        "participants": float(len(benefits)),
    }


def game_kpis(tables: Mapping[str, pa.Table]) -> dict[str, float]:
    """The compared KPIs of a cooperative-game run (no feeder): NaN where nothing maps."""
    units = tables.get("game_units", pa.table({}))
    s = tables.get("settlements", pa.table({}))
    out = dict.fromkeys(KPI_COLUMNS, NA)
    metered = _icol(s, "metered_wh")
    injected_mwh = float(np.clip(-metered, 0, None).sum() / WH_PER_MWH)
    consumed_mwh = float(np.clip(metered, 0, None).sum() / WH_PER_MWH)
    rev = float(_icol(units, "revenue").sum() / MICRO)
    cost = consumer_cost(s)
    shapley = _col(units, "shapley_value")
    out.update(
        prosumer_revenue=rev,
        prosumer_revenue_per_mwh=rev / injected_mwh if injected_mwh > 0 else NA,
        consumer_cost=cost,
        consumer_cost_per_mwh=cost / consumed_mwh if consumed_mwh > 0 else NA,
        dso_curtailment_kwh=dso_curtailment_kwh(tables.get("market", pa.table({}))),
        energy_traded_kwh=float(_icol(tables.get("trades", pa.table({})), "energy_wh").sum() / 1000.0),
        fairness_gini=gini(shapley),
        participants=float(shapley.size),
    )
    sec = tables.get("game_security")
    if sec is not None and sec.num_rows:  # game.grid: the grand coalition's flow at its hour
        size = _icol(sec, "size")
        g = int(np.argmax(size))  # the grand coalition is the largest
        secure = bool(sec.column("secure")[g].as_py())
        converged = bool(sec.column("converged")[g].as_py())
        energy_kwh = float(_col(sec, "energy_mwh")[g]) * 1000.0
        out.update(
            peak_import_kw=float(_col(sec, "ext_grid_p_mw")[g]) * 1000.0,
            voltage_violations=float(_icol(sec, "voltage_violations")[g]),
            dso_curtailment_kwh=0.0 if secure else energy_kwh,
            energy_not_served_kwh=0.0 if converged else energy_kwh,
        )
    return out
