"""Small synthetic results folders in the documented shapes, for the dashboard tests and
``bench/dashboard.py``.

* :func:`make_run` — a run folder as ``twin run`` writes it (``twin.results.SCHEMAS``,
  ``manifest.json``, ``kpis.json``, ``topology.json``); with ``hil=True`` also what
  ``twin hil serve`` adds (``hil_devices.json``, ``hil``, ``hil_writes``, ``hil_deadlines``);
  with ``resilience=True`` the tables of a resilience study (shapes in
  ``dashboards/twindash.py``); with ``extras=True`` the value-service tables (certificates,
  demand response, tokenized assets).
* :func:`make_compare` — a comparison folder as ``twin compare`` writes it (layout announced
  by its author in /work/coord/NOTES.md): ``compare.parquet`` (one row per scenario),
  ``compare.json`` and ``runs/<scenario>/``.
* :func:`make_sweep` — a sweep folder as ``twin sweep`` writes it (issue 7): ``kpis.parquet``
  (one row per run: ``run_id``, swept parameters by field path, ``seed``, ``status``, KPIs)
  and ``runs/<run_id>/`` run folders.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from twin.results import SCHEMAS, write_json_atomic, write_table_atomic

MICRO = 1_000_000
N_BUS, INTERVAL_S, N_INT = 7, 900, 8
KPI_NAMES = ("energy_traded_kwh", "mean_price_per_mwh", "curtailed_kwh", "vm_min_pu", "vm_max_pu",
             "max_line_loading_percent", "imbalance_import_kwh", "metered_consumption_kwh",
             "tokens_conserved", "trades", "wall_time_s")


def _write(folder: Path, name: str, rows: list[dict[str, Any]],
           schema: pa.Schema | None = None) -> None:
    schema = schema or SCHEMAS[name]
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    write_table_atomic(table, folder / f"{name}.parquet")


def _scenario(name: str, *, pv_share: float = 0.4, ev_count: int = 1) -> dict[str, Any]:
    return {
        "name": name, "seed": 1, "duration_s": N_INT * INTERVAL_S,
        "grid": {"kind": "cigre_lv", "vm_min_pu": 0.95, "vm_max_pu": 1.05, "max_loading_percent": 100},
        "agents": {"households": {"count": 4, "pv": {"share": pv_share}, "battery": {"share": 0.3}},
                   "evs": {"count": ev_count}, "community_storage": {"count": 1}},
        "market": {"interval_s": INTERVAL_S, "ledger": "chain", "retail_price_per_mwh": 300,
                   "feed_in_price_per_mwh": 80, "initial_balance": 1000},
    }


def make_run(folder: Path, *, name: str = "fixture", seed: int = 1, status: str = "complete",
             hil: bool = False, resilience: bool = False, extras: bool = False,
             pv_share: float = 0.4, ev_count: int = 1) -> Path:
    """Write a small run folder (7 buses, 8 intervals) and return it."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    times = [k * INTERVAL_S for k in range(N_INT)]
    # feeder: slack bus 0 -> trafo -> bus 1 -> radial lines 1-2-3-4, 2-5, 5-6
    edges = [(1, 2), (2, 3), (3, 4), (2, 5), (5, 6)]
    coords = [(0.0, 0.0), (0.0, -1.0), (1.0, -2.0), (2.0, -3.0), (3.0, -4.0), (-1.0, -3.0), (-2.0, -4.0)]
    topology = {
        "version": 1, "layout": "geodata",
        "buses": [{"bus": b, "name": f"Bus {b}", "vn_kv": 20.0 if b == 0 else 0.4, "x": x, "y": y}
                  for b, (x, y) in enumerate(coords)],
        "lines": [{"line": i, "from_bus": a, "to_bus": b, "length_km": 0.1, "in_service": True,
                   "name": f"Line {i}"} for i, (a, b) in enumerate(edges)],
        "trafos": [{"trafo": 0, "hv_bus": 0, "lv_bus": 1, "sn_mva": 0.4, "in_service": True}],
        "switches": [], "slack_buses": [0],
    }
    write_json_atomic(topology, folder / "topology.json")
    sun = np.sin(np.linspace(0, np.pi, N_INT))
    bus = [{"time_s": t, "bus": b, "vm_pu": 1.0 + 0.01 * sun[k] * b / N_BUS - 0.004 * b,
            "va_degree": -0.1 * b, "p_mw": 0.001 * b, "q_mvar": 0.0}
           for k, t in enumerate(times) for b in range(N_BUS)]
    line = [{"time_s": t, "line": i, "loading_percent": 20 + 60 * sun[k] / (i + 1),
             "p_from_mw": 0.01, "q_from_mvar": 0.001, "pl_mw": 1e-5}
            for k, t in enumerate(times) for i in range(len(edges))]
    agents = []
    kinds = [("household", 2), ("household", 3), ("household", 4), ("household", 6), ("ev", 4),
             ("storage", 5)]
    for k, t in enumerate(times):
        for d, (kind, b) in enumerate(kinds):
            agents.append({"time_s": t, "agent": f"{kind}_{d}", "kind": kind, "bus": b,
                           "soc": 0.5 + 0.05 * k if kind != "household" else float("nan"),
                           "p_mw": 0.001 * (d + 1) - 0.002 * sun[k], "metered_wh": 100 - 50 * d})
    orders, trades, settlements, market, chain, dso = [], [], [], [], [], []
    oid = tid = 0
    block = 10
    for k, t in enumerate(times):
        if k == 0:
            continue
        interval_orders = []
        for d in range(1, 7):
            oid += 1
            side = "sell" if d in (1, 6) else "buy"
            price = int((100 + 20 * d + rng.integers(0, 50)) * MICRO)
            interval_orders.append({"time_s": t, "interval": k, "order_id": oid, "device_id": d,
                                    "owner": d + 1, "side": side, "energy_wh": int(50 + 10 * d),
                                    "price_per_mwh": price})
        orders += interval_orders
        price = int(180 * MICRO + k * MICRO)
        vol = 0
        for s in (o for o in interval_orders if o["side"] == "sell"):
            b = next(o for o in interval_orders if o["side"] == "buy")
            tid += 1
            e = min(s["energy_wh"], b["energy_wh"])
            curt = 10 if k == 4 else 0
            vol += e - curt
            trades.append({"time_s": t, "interval": k, "trade_id": tid, "buy_order_id": b["order_id"],
                           "sell_order_id": s["order_id"], "buyer_device": b["device_id"],
                           "seller_device": s["device_id"], "cleared_wh": e, "energy_wh": e - curt,
                           "curtailed_wh": curt, "price_per_mwh": price})
        market.append({"time_s": t, "interval": k, "price_per_mwh": price, "volume_wh": vol,
                       "n_orders": len(interval_orders), "n_trades": 2,
                       "curtailed_wh": 20 if k == 4 else 0})
        dso.append({"time_s": t, "interval": k, "checks": 2, "violations_found": int(k == 4),
                    "violations_remaining": 0, "curtailed_wh": 20 if k == 4 else 0, "vm_min_pu": 0.98,
                    "vm_max_pu": 1.01, "max_loading_percent": 50.0})
        for d in range(1, 7):
            amount = int(rng.integers(-20_000, 20_000))
            settlements.append({"time_s": t, "interval": k, "device_id": d, "owner": d + 1,
                                "traded_wh": 50, "metered_wh": 60, "imbalance_wh": 10,
                                "trade_amount": amount, "imbalance_amount": -3000, "debt": 0})
        for fn in ("EnergyMarket.placeOrders", "EnergyMarket.clear", "EnergyMarket.settle"):
            block += 1
            chain.append({"time_s": t, "interval": k, "tx_hash": "0x" + f"{block:064x}",
                          "block": block, "gas_used": int(50_000 + 1000 * k), "function": fn})
    chain.insert(0, {"time_s": 0, "interval": None, "tx_hash": "0x" + "ab" * 32, "block": 1,
                     "gas_used": 46_000, "function": "SettlementToken.mint"})
    for table, rows in (("bus", bus), ("line", line), ("agents", agents), ("orders", orders),
                        ("trades", trades), ("settlements", settlements), ("market", market),
                        ("chain", chain), ("dso", dso)):
        _write(folder, table, rows)
    for table in ("hil", "hil_writes", "hil_deadlines"):  # twin run writes them empty
        _write(folder, table, [])
    if hil:
        _add_hil(folder, times)
    if resilience:
        _add_resilience(folder, times)
    if extras:
        _add_value_services(folder, times)
    traded_wh = sum(t["energy_wh"] for t in trades)
    kpis = {"energy_traded_kwh": traded_wh / 1000, "mean_price_per_mwh": 183.5,
            "curtailed_kwh": 0.02, "vm_min_pu": min(b["vm_pu"] for b in bus),
            "vm_max_pu": max(b["vm_pu"] for b in bus),
            "max_line_loading_percent": max(ln["loading_percent"] for ln in line),
            "imbalance_import_kwh": 1.0, "metered_consumption_kwh": 4.0, "trades": float(len(trades)),
            "tokens_conserved": 1.0, "wall_time_s": 1.5, "intervals_settled": float(N_INT - 1),
            "self_sufficiency": 0.75}  # twin.kpis: 1 - grid import / consumption
    if resilience:
        kpis |= {"energy_not_served_kwh": 12.5}
    write_json_atomic(kpis, folder / "kpis.json")
    manifest = {"scenario_name": name, "scenario": _scenario(name, pv_share=pv_share, ev_count=ev_count),
                "scenario_hash": "ab" * 32, "seed": seed, "package_version": "0.1.0",
                "start_time": "2016-06-15T00:00:00+00:00", "duration_s": N_INT * INTERVAL_S,
                "interval_s": INTERVAL_S, "status": status,
                "error": None if status == "complete" else "ContractRevert: settle reverted",
                "stopped_at_time_s": N_INT * INTERVAL_S if status == "complete" else 3 * INTERVAL_S,
                "chain": {"ledger": "chain", "chain_id": 31337, "state_file": "chain_state.json",
                          "contracts": {"EnergyMarket": "0x" + "11" * 20,
                                        "SettlementToken": "0x" + "22" * 20}},
                "tokens": {"conserved": True, "minted": 7 * 1000 * MICRO, "total_supply": 7 * 1000 * MICRO,
                           "market_holdings": 7 * 1000 * MICRO, "wallets": 0, "debt": 0},
                "tables": sorted(p.stem for p in folder.glob("*.parquet"))}
    write_json_atomic(manifest, folder / "manifest.json")
    return folder


def _tx(n: int) -> str:
    return "0x" + f"{n:064x}"


def _add_value_services(folder: Path, times: list[int]) -> None:
    """The value-layer tables of ``twin.results.SCHEMAS``: certificates, demand response,
    tokenized assets (every row with its tx_hash)."""
    cert = []
    for k, t in enumerate(times[1:], start=1):
        cert.append({"time_s": t, "interval": k, "vintage": k, "action": "issued", "trade_id": k,
                     "seller_device": 1, "seller": 2, "buyer_device": 2, "holder": 3,
                     "delivered_wh": 120, "count": 2, "tx_hash": _tx(900 + k)})
        if k % 3 == 0:
            cert.append({"time_s": t, "interval": k, "vintage": k - 1, "action": "retired",
                         "trade_id": None, "seller_device": None, "seller": None,
                         "buyer_device": 2, "holder": 3, "delivered_wh": 0, "count": 1,
                         "tx_hash": _tx(950 + k)})
    _write(folder, "certificates", cert)
    _write(folder, "dr_events", [
        {"time_s": times[e], "interval": e, "event_id": i, "poster": 1, "target_wh": 500,
         "price_per_mwh": 400 * MICRO, "budget": 200_000, "committed_wh": 400, "n_committed": 2,
         "paid": 120_000 + 10_000 * i, "refund": 80_000 - 10_000 * i, "reduction_wh": 300 + 50 * i,
         "status": "settled", "tx_hash": _tx(1000 + i)} for i, e in enumerate((3, 5))])
    _write(folder, "dr_payouts", [
        {"time_s": times[e], "interval": e, "event_id": i, "device_id": d, "owner": d + 1,
         "committed_wh": 200, "baseline_wh": 400, "metered_wh": 250, "reduction_wh": 150,
         "amount": 60_000 + 5_000 * i, "tx_hash": _tx(1100 + 10 * i + d)}
        for i, e in enumerate((3, 5)) for d in (2, 3)])
    _write(folder, "asset_distributions", [
        {"time_s": t, "interval": k, "asset": "solar_roof_1", "asset_id": 1, "device_id": 1,
         "issuer": 2, "revenue": 30_000 + 1000 * k, "amount": 27_000 + 900 * k,
         "tx_hash": _tx(1200 + k)} for k, t in enumerate(times[1:], start=1)])
    # frequency regulation: 20 kW procured of 25 offered in intervals 1-3, score 1, 0.5 + 0.25
    # paid per interval to device 2
    _write(folder, "regulation_intervals", [
        {"time_s": times[k], "interval": k, "requested_w": 30_000, "offered_w": 25_000 if k else 0,
         "procured_w": 20_000 if k else 0, "signal_mean": 0.1, "score": 1.0 if k else 0.0,
         "capacity_amount": 500_000 if k else 0, "performance_amount": 250_000 if k else 0,
         "status": "settled" if k else "none", "tx_hash": _tx(1400 + k) if k else ""}
        for k in range(4)])
    _write(folder, "regulation", [
        {"time_s": times[k], "interval": k, "device_id": 2, "owner": 3, "kind": "storage",
         "capacity_w": 20_000, "mileage_w": 125_000, "score_ppm": 1_000_000, "requested_wh": 10.0,
         "delivered_wh": 10.0, "capacity_amount": 500_000, "performance_amount": 250_000,
         "amount": 750_000, "tx_hash": _tx(1400 + k)} for k in range(1, 4)])
    _write(folder, "asset_claims", [
        {"time_s": times[-1], "asset": "solar_roof_1", "asset_id": 1, "holder": h, "shares": s_,
         "amount": 40_000 * s_, "tx_hash": _tx(1300 + h)} for h, s_ in ((3, 2), (4, 1), (5, 1))])


def _add_hil(folder: Path, times: list[int]) -> None:
    devices = [
        {"unit_id": 1, "device": "pv1", "kind": "pv_inverter", "mirrors": "household_0",
         "element": "sgen[0]", "bus": 2, "nameplate_w": 8000.0, "models": [1, 701, 702, 704],
         "registers": [40000, 40400]},
        {"unit_id": 2, "device": "bat1", "kind": "battery", "mirrors": "storage_5",
         "element": "storage[0]", "bus": 5, "nameplate_w": 30000.0, "models": [1, 701, 702, 704, 802],
         "registers": [40000, 40500]},
        {"unit_id": 3, "device": "meter1", "kind": "meter", "mirrors": "feeder connection point",
         "element": None, "bus": 1, "nameplate_w": 400000.0, "models": [1, 203],
         "registers": [40000, 40200]},
    ]
    write_json_atomic({"host": "127.0.0.1", "port": 5020, "base_address": 40000, "step_s": INTERVAL_S,
                       "rt_factor": 0.001, "devices": devices}, folder / "hil_devices.json")
    _write(folder, "hil", [
        {"time_s": t, "unit_id": u, "available_w": 5000.0, "w": 4000.0 - 500 * (k > 3),
         "var": 0.0, "v": 230.0, "w_max_w": 8000.0 if k <= 3 else 3500.0, "w_set_w": float("nan"),
         "reverted": "WMaxLimPct" if (u == 1 and k == 6) else ""}
        for k, t in enumerate(times) for u in (1, 2, 3)])
    _write(folder, "hil_writes", [
        {"time_s": float(t), "wall_time": 1_700_000_000.0 + k, "client": "127.0.0.1:40001",
         "unit_id": 1, "address": 40300, "count": 2, "exception_code": 0 if k != 5 else 3,
         "points": "WMaxLimPct,WMaxLimPctEna" if k != 5 else "WMaxLimPct: above nameplate"}
        for k, t in enumerate(times) if k >= 3])
    _write(folder, "hil_deadlines", [{"time_s": times[2], "lateness_s": 0.042,
                                      "deadline_wall": 1_700_000_010.0}])


def _add_resilience(folder: Path, times: list[int]) -> None:
    """``cases`` and ``steps`` as ``twin resilience`` writes them (twin/grid/resilience.py)."""
    i64, f64, s = pa.int64(), pa.float64(), pa.string()
    cases = [{"case": "base", "kind": "base", "lines_out": [], "trafos_out": []}]
    cases += [{"case": f"line_{i}", "kind": "n-1", "lines_out": [i], "trafos_out": []}
              for i in range(5)]
    cases += [{"case": "upstream_6h", "kind": "upstream", "lines_out": [], "trafos_out": [0]}]
    for j, c in enumerate(cases):
        c |= {"start_s": 0, "end_s": times[-1] + INTERVAL_S, "ens_kwh": 3.0 * j,
              "customers_interrupted": float(j), "customer_minutes": 60.0 * j, "saifi": 0.1 * j,
              "saidi_min": 6.0 * j, "island_survival_min": 90.0 if c["kind"] == "upstream" else float("nan"),
              "island_survived": False, "vm_min_pu": 0.97 - 0.002 * j, "vm_max_pu": 1.02,
              "overloaded_branches": 0, "max_loading_percent": 50.0, "nonconverged_steps": 0}
    _write(folder, "cases", cases, pa.schema(
        [("case", s), ("kind", s), ("lines_out", pa.list_(i64)), ("trafos_out", pa.list_(i64)),
         ("start_s", i64), ("end_s", i64), ("ens_kwh", f64), ("customers_interrupted", f64),
         ("customer_minutes", f64), ("saifi", f64), ("saidi_min", f64),
         ("island_survival_min", f64), ("island_survived", pa.bool_()), ("vm_min_pu", f64),
         ("vm_max_pu", f64), ("overloaded_branches", i64), ("max_loading_percent", f64),
         ("nonconverged_steps", i64)]))
    steps = [{"case": c["case"], "time_s": t, "demand_mw": 0.05,
              "unserved_mw": 0.001 * j if k >= 4 else 0.0, "shed_class": 0,
              "islanded": c["kind"] == "upstream" and k >= 2, "island_collapsed": False,
              "gf_p_mw": 0.0, "soc": max(0.1, 0.9 - 0.15 * max(0, k - 2)), "energized_buses": 7 - j,
              "vm_min_pu": 0.98, "vm_max_pu": 1.01, "max_loading_percent": 40.0, "converged": True}
             for k, t in enumerate(times) for j, c in enumerate(cases)]
    _write(folder, "steps", steps, pa.schema(
        [("case", s), ("time_s", i64), ("demand_mw", f64), ("unserved_mw", f64), ("shed_class", i64),
         ("islanded", pa.bool_()), ("island_collapsed", pa.bool_()), ("gf_p_mw", f64), ("soc", f64),
         ("energized_buses", i64), ("vm_min_pu", f64), ("vm_max_pu", f64),
         ("max_loading_percent", f64), ("converged", pa.bool_())]))


def make_study(folder: Path) -> Path:
    """A resilience study folder (``twin resilience --out``): cases, steps, kpis.json, plus the
    feeder's topology.json so the map can be drawn."""
    run = make_run(Path(folder) / ".tmp_run", resilience=True)
    folder = Path(folder)
    for name in ("cases.parquet", "steps.parquet", "topology.json"):
        shutil.copy(run / name, folder / name)
    shutil.rmtree(run)
    write_json_atomic({"scenario": "fixture_resilience", "scenario_hash": "cd" * 32, "cases": 7.0,
                       "ens_kwh_total": 63.0, "n-1_secure_fraction": 0.2,
                       "upstream_secure_fraction": 0.0, "vm_min_pu": 0.958}, folder / "kpis.json")
    return folder


def make_sweep(folder: Path, *, n_pv: int = 3, n_ev: int = 2, n_seeds: int = 2,
               run_folders: int | None = None, fail_every: int = 0) -> Path:
    """A sweep over ``agents.households.pv.share`` × ``agents.evs.count`` × seeds.

    ``run_folders``: how many of the runs get a run folder under ``runs/`` (None: all); the
    first one is written and the others are copies of it. ``fail_every``: every n-th run failed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pv = np.round(np.linspace(0.2, 0.8, n_pv), 3)
    ev = [5 * (i + 1) for i in range(n_ev)]
    rows = []
    for i, (p, e, seed) in enumerate(itertools.product(pv, ev, range(n_seeds))):
        failed = bool(fail_every) and i % fail_every == fail_every - 1
        rng = np.random.default_rng(i)
        row = {"run_id": f"r{i:04d}", "agents.households.pv.share": float(p),
               "agents.evs.count": int(e), "seed": seed, "status": "failed" if failed else "complete",
               "error": "RuntimeError: anvil exited" if failed else None}
        for k in KPI_NAMES:
            row[k] = float("nan") if failed else float(rng.normal(100 * p + e, 5))
        row["vm_max_pu"] = float("nan") if failed else 1.0 + 0.04 * p + 0.001 * rng.normal()
        rows.append(row)
    fields = [("run_id", pa.string()), ("agents.households.pv.share", pa.float64()),
              ("agents.evs.count", pa.int64()), ("seed", pa.int64()), ("status", pa.string()),
              ("error", pa.string()), *[(k, pa.float64()) for k in KPI_NAMES]]
    _write(folder, "kpis", rows, pa.schema(fields))
    write_json_atomic({"parameters": ["agents.households.pv.share", "agents.evs.count"],
                       "spec": {"name": "fixture_sweep", "base": "quickstart.yaml",
                                "description": "PV share x EV count", "seeds": n_seeds},
                       "variants": [{"run_id": r["run_id"], "seed": r["seed"]} for r in rows]},
                      folder / "sweep.json")
    n = len(rows) if run_folders is None else run_folders
    first: Path | None = None
    for row in rows[:n]:
        target = folder / "runs" / row["run_id"]
        if first is None:
            first = make_run(target, name=f"sweep-{row['run_id']}",
                             pv_share=row["agents.households.pv.share"],
                             ev_count=row["agents.evs.count"])
        else:
            shutil.copytree(first, target, dirs_exist_ok=True)
    return folder


#: KPI columns of compare.parquet (twin/kpis/metrics.py), float64, NaN = not applicable.
COMPARE_KPIS = ("self_sufficiency", "prosumer_revenue", "prosumer_revenue_per_mwh", "consumer_cost",
                "consumer_cost_per_mwh", "service_income", "net_benefit", "peak_import_kw",
                "curtailed_kwh", "voltage_violations", "energy_not_served_kwh",
                "energy_traded_kwh", "gas_per_kwh", "chain_cost_per_kwh", "fairness_gini",
                "participants")


def make_compare(folder: Path) -> Path:
    """Three scenarios compared: two complete (a chain run and a reference-ledger CDA run, each
    with a run folder) and one failed before writing anything."""
    folder = Path(folder)
    scen = [("baseline", "chain", "uniform", "complete"), ("cda market", "reference", "cda", "complete"),
            ("broken", "chain", "uniform", "failed")]
    rows = []
    for i, (name, ledger, mechanism, status) in enumerate(scen):
        ok = status == "complete"
        row: dict[str, Any] = {
            "scenario": name, "file": f"scenarios/{name.replace(' ', '_')}.yaml", "kind": "feeder",
            "ledger": ledger, "mechanism": mechanism, "grid": "-", "status": status,
            "error": None if ok else "ScenarioError: market.interval_s: must be positive",
            "wall_s": 12.5 + i if ok else 0.4, "run_dir": f"runs/{name}"}
        for j, k in enumerate(COMPARE_KPIS):
            row[k] = float("nan") if not ok or (k == "gas_per_kwh" and ledger == "reference") \
                else float(10 * (j + 1) + 3 * i)
        rows.append(row)
        if ok:
            make_run(folder / "runs" / name, name=name, seed=i + 1)
    fields = [("scenario", pa.string()), ("file", pa.string()), ("kind", pa.string()),
              ("ledger", pa.string()), ("mechanism", pa.string()), ("grid", pa.string()),
              ("status", pa.string()), ("error", pa.string()), ("wall_s", pa.float64()),
              ("run_dir", pa.string()), *[(k, pa.float64()) for k in COMPARE_KPIS]]
    _write(folder, "compare", rows, pa.schema(fields))
    write_json_atomic({"kpis": {k: f"{k.replace('_', ' ')} (fixture)" for k in COMPARE_KPIS},
                       "chain_pricing": {"gas_price_gwei": 20.0, "native_price": 3000.0},
                       "order": [r["scenario"] for r in rows]}, folder / "compare.json")
    return folder
