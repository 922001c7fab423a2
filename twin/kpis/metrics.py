"""The KPIs of a run, one definition each, computed from its results tables.

Pure functions over Arrow tables (no file access: :func:`twin.kpis.read_tables` reads a run
folder). ``kpis.json`` (:func:`twin.kpis.compute_kpis`), ``twin compare``, sweeps, ``twin
regress`` and the dashboards all read these numbers.
Every market design is judged by the same numbers, computed the same way from the tables
every feeder run writes (``grid``, ``bus``, ``market``, ``settlements``, ``trades``,
``chain``), so a pilot cannot look better because its own KPI code is kinder:

* ``self_sufficiency`` -- ``1 - import / consumption`` over the ``grid`` table: the share
  of the feeder's consumption (loads and storage charging, net of discharging) not drawn
  from upstream (0..1).
* ``local_market_share`` -- the share of the participants' metered consumption covered by
  energy they bought on the local market: per settlement row ``min(bought, consumed)``
  (``traded_wh`` and ``metered_wh`` when positive), summed, over the consumed sum (0..1).
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
  sold to / bought from the DSO, charging sessions paid by drivers to hosts, network fees
  paid to the DSO). Money that pays for energy (green tokens, charging, network fees) also
  counts in prosumer revenue / consumer cost, and its energy in ``service_energy_kwh``. Green-currency rewards are tokens, not money: not counted.
* ``net_benefit`` -- the sum over participants of their money with the market (trades,
  imbalance, services) minus their money under the *no-market tariff baseline*: every
  metered Wh bought at the retail tariff, every injected Wh paid at the feed-in tariff (the
  billing counterfactual: same meter readings, no local market).
* ``peak_import_kw`` -- highest upstream import of one interval (``grid.ext_grid_p_mw``).
* ``curtailed_kwh`` -- energy of cleared trades the DSO curtailed (``market.curtailed_wh``).
* ``voltage_violations`` -- bus-intervals with a voltage outside ``[vm_min_pu, vm_max_pu]``
  (buses without a voltage are counted in energy not served, not here).
* ``energy_not_served_kwh`` -- load at buses without a voltage (de-energized, or an unsolved
  power flow), interval energy.
* ``energy_traded_kwh`` -- energy of the local market's trades after curtailment
  (``trades.energy_wh``), P2P only.
* ``service_energy_kwh`` -- energy paid for through market services outside the auction
  (green tokens sold to the DSO, charging sessions).
* ``gas_per_kwh`` and ``chain_cost_per_kwh`` -- gas of every ledger transaction of the run
  (``chain`` table: deployments and registration included) per kWh traded or paid through
  services, and its cost at a stated gas price and native-coin price (currency per kWh).
  NaN (NA) on the reference ledger: it has no chain, so no gas.
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
voltage violations = its buses outside the band, curtailed energy = the trade's energy if the
check rejected it (else 0), energy not served = the trade's energy if its flow did not
converge (else 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twin.kpis.reliability import COMPARED_NOTES as RELIABILITY_NOTES
from twin.kpis.reliability import RELIABILITY_COLUMNS, reliability_kpis, settlements_after_trueup
from twin.market.units import MICRO, WH_PER_MWH, price_from_per_mwh
from twin.services.base import ServiceFlow
from twin.services.registry import service_flows as registry_flows

__all__ = [
    "KPI_COLUMNS",
    "KPI_NOTES",
    "ChainPricing",
    "RunInputs",
    "ServiceFlow",
    "consumer_cost",
    "curtailed_kwh",
    "energy_not_served_kwh",
    "feeder_kpis",
    "game_kpis",
    "gas_per_kwh",
    "gini",
    "local_market_share",
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
    "curtailed_kwh", "voltage_violations", "energy_not_served_kwh", "energy_traded_kwh",
    "service_energy_kwh", "local_market_share", "gas_per_kwh", "chain_cost_per_kwh", "fairness_gini", "participants",
    "limited_pv_kwh", "limited_pv_jain", "ancillary_revenue",
    # faults inside the run, data and chain faults (twin/kpis/reliability.py); NA without
    *RELIABILITY_COLUMNS,
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
    "curtailed_kwh": "cleared trade energy curtailed by the DSO security check, kWh",
    "voltage_violations": "bus-intervals outside the voltage band",
    "energy_not_served_kwh": "load at buses without voltage, plus demand without supply or shed in islands under faults, kWh",
    "energy_traded_kwh": "energy traded on the local market (P2P, after curtailment), kWh",
    "service_energy_kwh": "energy paid through services (green tokens sold, charging sessions), kWh",
    "local_market_share": "share of participants' metered consumption bought locally (0..1)",
    "gas_per_kwh": "gas of all ledger transactions (deployments included) per kWh traded or paid through services (NA: reference ledger)",
    "chain_cost_per_kwh": "that gas at the stated gas and coin prices, currency/kWh (NA: reference ledger)",
    "fairness_gini": "Gini of per-participant net benefit (0 = equal; normalised by mean absolute value)",
    "participants": "accounts that settled (operator and DSO excluded)",
    "limited_pv_kwh": "PV energy the DSO held back (curtailed trades or operating envelopes), kWh",
    "ancillary_revenue": "frequency-regulation pay to the VPP's resources (capacity and performance; market.services.ancillary), currency",
    "limited_pv_jain": "Jain index of PV energy held back per PV household (1: equal burden; 1/n: one carries all; 1 when nothing is held back)",
    **RELIABILITY_NOTES,  # twin/kpis/reliability.py: each reliability KPI's unit and meaning
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
    #: intervals the run was planned for (market availability); None: not known
    n_intervals: int | None = None

    @classmethod
    def of(cls, scenario: Any) -> RunInputs:
        """The inputs of a feeder scenario."""
        m = scenario.market
        return cls(interval_s=m.interval_s, vm_min_pu=scenario.grid.vm_min_pu,
                   vm_max_pu=scenario.grid.vm_max_pu,
                   retail_price_per_mwh=price_from_per_mwh(m.retail_price_per_mwh),
                   feed_in_price_per_mwh=price_from_per_mwh(m.feed_in_price_per_mwh),
                   ledger=m.ledger, n_intervals=scenario.n_intervals)


def _col(table: pa.Table, name: str) -> np.ndarray:
    """A column as a float numpy array (nulls -> NaN); empty when the table is empty."""
    if table.num_rows == 0:
        return np.zeros(0)
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def _icol(table: pa.Table, name: str) -> np.ndarray:
    """A column as an int64 numpy array (nulls -> 0); empty when the table is empty."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    col = table.column(name)
    return np.asarray((col.fill_null(0) if col.null_count else col).to_numpy(), dtype=np.int64)


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


def curtailed_kwh(market: pa.Table) -> float:
    """Energy of cleared trades the DSO curtailed, kWh."""
    return float(_icol(market, "curtailed_wh").sum() / 1000.0)


def limited_pv_wh(agents: pa.Table) -> np.ndarray:
    """PV energy held back per PV household over the run (available - produced), Wh.

    What curtailment (the export cap of a curtailed seller) or an operating envelope (the
    export limit) spilled; households without PV are left out."""
    if not agents.num_rows or "pv_available_wh" not in agents.column_names:
        return np.zeros(0)
    hh = pc.equal(agents.column("kind"), "household").fill_null(False).to_numpy()
    dev = _icol(agents, "device_id")[hh]
    avail = _col(agents, "pv_available_wh")[hh]
    lost = np.clip(avail - _col(agents, "pv_wh")[hh], 0.0, None)
    ids, inv = np.unique(dev, return_inverse=True)
    has_pv = np.bincount(inv, weights=avail, minlength=ids.size) > 0
    return np.bincount(inv, weights=lost, minlength=ids.size)[has_pv]


def jain_index(values: np.ndarray | list[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2) in [1/n, 1]; 1 for all zeros; NaN if empty."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return NA
    sq = float((x * x).sum())
    return 1.0 if sq == 0 else float(x.sum() ** 2 / (x.size * sq))


def local_market_share(settlements: pa.Table) -> float:
    """Share of the participants' metered consumption bought on the local market (0..1;
    NaN without consumption): ``sum min(bought, consumed) / sum consumed`` over settlement
    rows."""
    metered = np.clip(_icol(settlements, "metered_wh"), 0, None)
    bought = np.clip(_icol(settlements, "traded_wh"), 0, None)
    consumed = int(metered.sum())
    return float(np.minimum(bought, metered).sum() / consumed) if consumed > 0 else NA


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


def _sum_by_owner(owner: np.ndarray, gain: np.ndarray) -> dict[int, int]:
    """Participant -> the sum of its rows' ``gain`` (exact integers; operator and DSO left out)."""
    keep = ~np.isin(owner, list(NON_PARTICIPANTS))
    owner, gain = owner[keep], gain[keep]
    if not owner.size:
        return {}
    if int(np.abs(gain).max()) >= (1 << 62) // owner.size:  # an int64 sum could overflow
        out: dict[int, int] = {}
        for o, g in zip(owner.tolist(), gain.tolist(), strict=True):
            out[o] = out.get(o, 0) + g
        return out
    order = np.argsort(owner, kind="stable")
    owner, gain = owner[order], gain[order]
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return dict(zip(owner[first].tolist(), np.add.reduceat(gain, first).tolist(), strict=True))


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
    out = _sum_by_owner(owner, gain)
    for o, amount in (service_income or {}).items():
        if o not in NON_PARTICIPANTS:
            out[o] = out.get(o, 0) + int(amount)
    return {o: v / MICRO for o, v in sorted(out.items())}


#: Money that market services move outside the market's settlement, per results table
#: (each service declares its flows: ``ServiceDef.flows`` in twin/services/<name>). Only the
#: tables a run wrote are read. Asset tokens: the issuer hands its asset's revenue to the
#: contract (``asset_distributions``), the investors claim it (``asset_claims``); the share
#: purchase price is not modelled, so investors' net benefit is their claims. Green exchange:
#: the DSO pays for the tokens prosumers sell and is paid for the tokens consumers buy.
#: Charging sessions: the driver pays the charger's host. Network fees: buyers pay the DSO.
#: Green currency is an incentive token, not money: it is not counted.
SERVICE_FLOWS: dict[str, tuple[ServiceFlow, ...]] = {}
for _f in registry_flows():
    SERVICE_FLOWS[_f.table] = (*SERVICE_FLOWS.get(_f.table, ()), _f)


def service_flows(tables: Mapping[str, pa.Table]) -> list[tuple[int, int, bool, int]]:
    """Every service money movement as ``(account, signed micro-units, pays for energy,
    energy Wh it paid for (0 unless counted here))``."""
    out: list[tuple[int, int, bool, int]] = []
    for name, flows in SERVICE_FLOWS.items():
        t = tables.get(name)
        if t is None or t.num_rows == 0:
            continue
        for f in flows:
            if f.amount not in t.column_names:  # a table written before the column existed
                continue
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

    s = settlements_after_trueup(t("settlements"), tables.get("trueups"))  # faults.data
    metered = _icol(s, "metered_wh")
    traded_kwh = float(_icol(t("trades"), "energy_wh").sum() / 1000.0)
    injected_mwh = float(np.clip(-metered, 0, None).sum() / WH_PER_MWH)
    consumed_mwh = float(np.clip(metered, 0, None).sum() / WH_PER_MWH)
    all_flows = service_flows(tables)
    service_kwh = sum(wh for *_, wh in all_flows) / 1000.0
    flows = [(a, v, e) for a, v, e, _ in all_flows if a not in NON_PARTICIPANTS]
    rev = prosumer_revenue(s) + sum(v for _, v, e in flows if e and v > 0) / MICRO
    cost = consumer_cost(s) - sum(v for _, v, e in flows if e and v < 0) / MICRO
    income: dict[int, int] = {}
    for a, v, _ in flows:
        income[a] = income.get(a, 0) + v
    benefits = net_benefits(s, retail_price_per_mwh=inputs.retail_price_per_mwh,
                            feed_in_price_per_mwh=inputs.feed_in_price_per_mwh,
                            service_income=income)
    gas = gas_per_kwh(t("chain"), traded_kwh=traded_kwh + service_kwh, ledger=inputs.ledger)
    reliability = reliability_kpis(tables, interval_s=inputs.interval_s,
                                   n_intervals=inputs.n_intervals)
    limited_pv = limited_pv_wh(t("agents"))
    return {
        "self_sufficiency": self_sufficiency(t("grid")),
        "prosumer_revenue": rev,
        "prosumer_revenue_per_mwh": rev / injected_mwh if injected_mwh > 0 else NA,
        "consumer_cost": cost,
        "consumer_cost_per_mwh": cost / consumed_mwh if consumed_mwh > 0 else NA,
        "service_income": sum(income.values()) / MICRO,
        "net_benefit": float(sum(benefits.values())),
        "peak_import_kw": peak_import_kw(t("grid")),
        "curtailed_kwh": curtailed_kwh(t("market")),
        "voltage_violations": float(voltage_violations(t("bus"), vm_min_pu=inputs.vm_min_pu,
                                                       vm_max_pu=inputs.vm_max_pu)),
        "energy_not_served_kwh": energy_not_served_kwh(t("bus"), interval_s=inputs.interval_s)
        + float(np.nan_to_num(reliability["energy_not_served_faults_kwh"])),
        "energy_traded_kwh": traded_kwh,
        "service_energy_kwh": service_kwh,
        "local_market_share": local_market_share(s),
        "gas_per_kwh": gas,
        "chain_cost_per_kwh": gas * pricing.cost_per_gas() if np.isfinite(gas) else NA,
        "fairness_gini": gini(list(benefits.values())),
        "participants": float(len(benefits)),
        "limited_pv_kwh": float(limited_pv.sum() / 1000.0),
        "limited_pv_jain": jain_index(limited_pv),
        "ancillary_revenue": float(_icol(t("regulation"), "amount").sum() / MICRO),
        **reliability,
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
        curtailed_kwh=curtailed_kwh(tables.get("market", pa.table({}))),
        service_energy_kwh=0.0,
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
            curtailed_kwh=0.0 if secure else energy_kwh,
            energy_not_served_kwh=0.0 if converged else energy_kwh,
        )
    return out
