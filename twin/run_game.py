"""A game run: play the scenario's cooperative game (:mod:`twin.market.game`), check the
DSO's security of every coalition when the game has a grid, settle the grand coalition on
the reference ledger and write the game tables, ``kpis.json`` and the manifest (called by
:func:`twin.run.run_scenario` for a scenario with a ``game`` section)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin import __version__
from twin.market.audit import token_audit
from twin.market.rows import market_row, order_rows, settlement_rows, trade_rows
from twin.market.units import MICRO, price_from_per_mwh
from twin.results import RunRecorder, write_json_atomic
from twin.run_outcome import RunOutcome, git_sha
from twin.scenario import Scenario

__all__ = ["run_game"]


def run_game(scenario: Scenario, *, out_dir: Path, scenario_path: str | None) -> RunOutcome:
    """Play the scenario's cooperative game (twin/market/game.py) and write its results."""
    from twin.market.game import GeneratorUnit, consortium_game, consortium_on_ledger
    from twin.market.reference import ReferenceLedger

    t0 = time.perf_counter()
    g = scenario.game
    assert g is not None
    m = scenario.market
    units = [GeneratorUnit(**u.model_dump(exclude={"bus"})) for u in g.units]
    res = consortium_game(units, demand_mwh=g.demand_mwh, period_h=g.period_h, valuation=g.valuation)
    security_rows: list[dict[str, Any]] = []
    security_kpis: dict[str, float] = {}
    rejected_for: Any = None  # the DSO's verdicts on another valuation's dispatch
    if g.grid is not None:  # DSO security check of every coalition (twin/market/game_security.py)
        from twin.market import game_security as gs
        from twin.market.game import secure_game

        unit_bus = [(u.name, u.bus) for u in g.units if u.bus is not None]
        assert g.buyer_bus is not None and len(unit_bus) == len(g.units)  # scenario validation
        feeder = gs.game_feeder(simbench_code=g.grid.simbench_code, start=scenario.start,
                                period_h=g.period_h, unit_bus=unit_bus, buyer_bus=g.buyer_bus,
                                source=Path(scenario_path).name if scenario_path else scenario.name)
        limits = gs.SecurityLimits(vm_min_pu=g.grid.vm_min_pu, vm_max_pu=g.grid.vm_max_pu,
                                   max_loading_percent=g.grid.max_loading_percent)
        checks = gs.check_coalitions(feeder, res.coalitions, demand_mw=g.demand_mwh / g.period_h,
                                     period_h=g.period_h, limits=limits)

        def rejected_for(r: Any) -> list[frozenset[str]]:
            ch = gs.check_coalitions(feeder, r.coalitions, demand_mw=g.demand_mwh / g.period_h,
                                     period_h=g.period_h, limits=limits)
            return [c for c, k in ch.items() if c and k.feasible_dispatch and not k.secure]

        res = secure_game(res, rejected=[c for c, k in checks.items()
                                         if c and k.feasible_dispatch and not k.secure])
        security_rows = gs.security_rows(checks, market_value={c: res.market_value(c) for c in checks},
                                         value={c: res.value(c) for c in checks})
        grand_check = checks[frozenset(u.name for u in units)]
        if not grand_check.secure:  # keep every coalition's verdict, then stop
            rejected_rec = RunRecorder(out_dir)
            rejected_rec.add("game_security", security_rows)
            rejected_rec.flush()
            raise gs.SecurityRejected(f"game.grid: the DSO security check rejects the grand "
                                      f"coalition's dispatch ({grand_check.reason}); nothing can be "
                                      f"traded (every coalition's verdict: {out_dir / 'game_security.parquet'})")
        security_kpis = gs.security_kpis(checks, grand=frozenset(u.name for u in units))
    check_rows, check_kpis = _game_checks(units, res, demand_mwh=g.demand_mwh, period_h=g.period_h,
                                          rejected_for=rejected_for)
    ledger = ReferenceLedger(interval_s=round(g.period_h * 3600),
                             retail_price_per_mwh=price_from_per_mwh(m.retail_price_per_mwh),
                             feed_in_price_per_mwh=price_from_per_mwh(m.feed_in_price_per_mwh))
    st = consortium_on_ledger(res, ledger)
    tokens = token_audit(ledger, accounts=range(len(st.devices) + 2), minted=st.minted)
    rec = RunRecorder(out_dir)
    key = {c: "+".join(sorted(c)) for c in res.coalitions}
    rec.add("game_coalitions", [
        {"coalition": key[c], "size": len(c), "feasible": o.feasible, "price_per_mwh": o.price_per_mwh,
         "cost": o.cost, "revenue": o.revenue if o.feasible else 0.0, "value": res.value(c)}
        for c, o in res.coalitions.items()])
    rec.add("game_security", security_rows)
    rec.add("game_checks", check_rows)
    from twin.market.game_paper import price_curve_rows, price_segments

    rec.add("game_price_curve", price_curve_rows(units, period_h=g.period_h))
    rec.add("game_price_segments", [
        {"segment": j, "from_mwh": sg.from_mw * g.period_h, "to_mwh": sg.to_mw * g.period_h,
         "setter": sg.setter, "setter_at_max": sg.setter_at_max, "price_from_per_mwh": sg.price_from,
         "price_to_per_mwh": sg.price_to} for j, sg in enumerate(price_segments(units))])
    by = {u.name: u for u in units}
    rec.add("game_dispatch", [
        {"coalition": key[c], "unit": n, "p_mw": p, "bid_per_mwh": by[n].bid(p) if p else 0.0,
         "cost": by[n].cost(p) * g.period_h, "profit": o.profit[n]}
        for c, o in res.coalitions.items() for n, p in o.dispatch_mw.items()])
    grand = res.grand
    rec.add("game_units", [
        {"unit": n, "grand_p_mw": grand.dispatch_mw[n], "grand_profit": grand.profit[n],
         "shapley_value": res.shapley[n], "energy_wh": st.energy_wh[n], "revenue": st.revenue[n],
         "transfer": st.transfers[n]} for n in by])
    # the market tables, built by the same row builders as a feeder run's market step
    rec.add("orders", order_rows(st.orders, time_s=0))
    rec.add("trades", trade_rows(st.clearing.trades, time_s=0))
    rec.add("settlements", settlement_rows(st.settlements, time_s=0))
    rec.add("market", [market_row(st.clearing, time_s=0, interval=0, n_orders=len(st.orders),
                                  curtailed_wh=0)])
    rec.flush()
    kpis: dict[str, float] = {
        "game_price_per_mwh": grand.price_per_mwh, "game_grand_value": grand.value,
        "game_grand_cost": grand.cost, "game_buyer_payment": grand.revenue,
        "energy_traded_kwh": st.clearing.volume_wh / 1000,
        "mean_price_per_mwh": st.clearing.price_per_mwh / MICRO,
        "tokens_conserved": 1.0 if tokens["conserved"] else 0.0,
        "total_supply": float(tokens["total_supply"]),
    }
    for c in res.coalitions:
        kpis[f"game_value_{key[c]}"] = res.value(c)
        if security_kpis:
            kpis[f"game_market_value_{key[c]}"] = res.market_value(c)
    kpis.update(security_kpis)
    kpis.update(check_kpis)
    for n in by:
        kpis[f"game_p_mw_{n}"] = grand.dispatch_mw[n]
        kpis[f"game_profit_{n}"] = grand.profit[n]
        kpis[f"game_shapley_{n}"] = res.shapley[n]
    wall_s = time.perf_counter() - t0
    kpis["wall_time_s"] = round(wall_s, 3)
    write_json_atomic(kpis, out_dir / "kpis.json")
    write_json_atomic({
        "scenario_name": scenario.name, "scenario_file": scenario_path,
        "scenario": scenario.model_dump(mode="json"), "scenario_hash": scenario.digest(),
        "seed": scenario.seed, "package_version": __version__, "git_sha": git_sha(),
        "start_time": scenario.start.astimezone(UTC).isoformat(), "status": "complete",
        "kind": "game", "chain": {"ledger": "reference"}, "tokens": tokens,
        "finished_at": datetime.now(UTC).isoformat(),
        "tables": sorted(p.stem for p in out_dir.glob("*.parquet")),
    }, out_dir / "manifest.json")
    return RunOutcome(out_dir=out_dir, kpis=kpis, wall_s=wall_s)


def _game_checks(units: list[Any], res: Any, *, demand_mwh: float, period_h: float,
                 rejected_for: Any = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Superadditivity and core of the game under both valuations (the scenario's one as
    played, security rejections included; the other's dispatch checked by ``rejected_for``,
    the DSO's check, when the game has a grid), as table rows and KPIs
    ``game_<check>_<valuation>``."""
    from twin.market.game import VALUATIONS, consortium_game, secure_game
    from twin.market.game_paper import curve_price, curve_range_mw
    from twin.market.game_properties import core_check, superadditivity

    names = [u.name for u in units]
    rows: list[dict[str, Any]] = []
    kpis: dict[str, float] = {}
    q0, q1 = curve_range_mw(units)
    if q0 <= demand_mwh / period_h <= q1:
        kpis["game_curve_price_per_mwh"] = curve_price(units, demand_mwh / period_h)[0]
    for val in VALUATIONS:
        if val == res.valuation:
            r = res
        elif val == "paper" and "game_curve_price_per_mwh" not in kpis:
            continue  # the demand is off the consortium's bid curve: no paper price
        else:
            r = consortium_game(units, demand_mwh=demand_mwh, period_h=period_h, valuation=val)
            if rejected_for is not None:
                r = secure_game(r, rejected=rejected_for(r))
        values = {c: r.value(c) for c in r.coalitions}
        sa = superadditivity(values, names)
        cc = core_check(values, names, r.shapley)
        worst = sa.violations[0] if sa.violations else None
        rows.append({
            "valuation": val, "played": val == res.valuation, "grand_value": r.value(frozenset(names)),
            "superadditive": sa.superadditive, "n_violations": len(sa.violations),
            "worst_gap": sa.worst_gap,
            "worst_pair": f"{'+'.join(sorted(worst[0]))} | {'+'.join(sorted(worst[1]))}" if worst else "",
            "core_nonempty": cc.core_nonempty, "least_core_epsilon": cc.least_core_epsilon,
            "shapley_in_core": cc.allocation_in_core, "shapley_max_excess": cc.max_excess,
            "blocking_coalition": "+".join(sorted(cc.blocking))})
        kpis |= {f"game_superadditive_{val}": float(sa.superadditive),
                 f"game_core_nonempty_{val}": float(cc.core_nonempty),
                 f"game_shapley_in_core_{val}": float(cc.allocation_in_core),
                 f"game_least_core_epsilon_{val}": cc.least_core_epsilon,
                 f"game_grand_value_{val}": r.value(frozenset(names))}
        kpis |= {f"game_shapley_{val}_{n}": r.shapley[n] for n in names}
    return rows, kpis
