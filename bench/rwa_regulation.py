"""Offline estimate: the RWA VPP pilot's revenue by stream with frequency regulation added.

The one-stop VPP paper (seed 000, §6) reports monthly revenue of about 48 % market trading,
32 % frequency regulation and 20 % demand response. Regulation is not yet wired into runs
(twin/services/ancillary/rules.py holds its reference rules), so this script estimates it *offline*
from a finished ``rwa_vpp`` run:

* per interval, each community battery's symmetric headroom around what it actually did
  (its metered power and state of charge at the interval's start; intervals with a DR call
  are left out: the battery is committed there) -- :func:`storage_headroom_kw`;
* the TSO buys all of it (assumption: regulation demand exceeds this small VPP's offer);
* a seeded synthetic signal (60 s, tau 300 s, sigma 0.35) drives the batteries from their
  start-of-interval energy; score and payment by the reference rules, at the stated prices;
* market revenue = the storage assets' market revenue plus the VPP's PV members' sales; DR =
  the DR service's payouts. The regulation energy is assumed energy-neutral within the day
  (the signal's mean is ~0), so it does not change the market and DR streams.

Usage: ``python bench/rwa_regulation.py RUN_DIR [--capacity-price 40] [--performance-price 2]``
(prices per MW-hour of capacity and per MW of mileage, scenario currency). The last line is
``key=value`` headline figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from twin.services.ancillary.rules import (
    dispatch,
    performance_score,
    procure,
    settle_regulation,
    storage_headroom_kw,
    synthetic_signal,
)

PAPER = {"market": 0.48, "regulation": 0.32, "dr": 0.20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--capacity-price", type=float, default=40.0, help="per MW-hour of capacity")
    ap.add_argument("--performance-price", type=float, default=2.0, help="per MW of mileage")
    a = ap.parse_args()
    man = json.loads((a.run_dir / "manifest.json").read_text())
    kpis = json.loads((a.run_dir / "kpis.json").read_text())
    sc = man["scenario"]
    cs = sc["agents"]["community_storage"]
    interval_s = int(sc["market"]["interval_s"])
    agents = pq.read_table(a.run_dir / "agents.parquet").to_pandas()
    st = agents[agents["kind"] == "storage"].sort_values(["time_s", "device_id"])
    ids = sorted(st["device_id"].unique())
    soc = st.pivot(index="time_s", columns="device_id", values="soc")[ids].to_numpy()
    p_mw = st.pivot(index="time_s", columns="device_id", values="p_mw")[ids].to_numpy()
    n_int, n_bat = soc.shape
    cap_wh = np.full(n_bat, cs["capacity_kwh"] * 1000.0)
    eta = float(np.sqrt(cs["efficiency"]))
    dr = set()
    if (a.run_dir / "dr_events.parquet").is_file():
        dr = set(pq.read_table(a.run_dir / "dr_events.parquet").to_pandas()["interval"].tolist())
    sig = synthetic_signal(np.random.default_rng(int(sc["seed"])), n_intervals=n_int, interval_s=interval_s)
    cap_price, perf_price = round(a.capacity_price * 1e6), round(a.performance_price * 1e6)
    reg_total, cap_total, score_sum, n_used, mw_h = 0, 0, 0.0, 0, 0.0
    soc_prev = np.full(n_bat, cs["soc_init"])
    for k in range(n_int):
        e0 = soc_prev * cap_wh  # energy at the interval's start
        soc_prev = soc[k]
        if k in dr:
            continue
        plan_kw = -p_mw[k] * 1000.0  # discharge positive (load convention: consumption positive)
        head = storage_headroom_kw(energy_wh=e0, capacity_wh=cap_wh, power_kw=np.full(n_bat, cs["power_kw"]),
                                   soc_min=cs["soc_min"], soc_max=cs["soc_max"], interval_s=interval_s,
                                   eta=eta, plan_kw=plan_kw)
        got = procure(float(head.sum()), dict(enumerate(head.tolist())))
        cap_w = np.array([got[j] for j in range(n_bat)], dtype=np.int64)
        if cap_w.sum() == 0:
            continue
        req, out, _ = dispatch(sig[k], cap_w, step_s=60, energy_wh=e0, capacity_wh=cap_wh,
                               soc_min=cs["soc_min"], soc_max=cs["soc_max"], eta=eta)
        score = performance_score(req, out)
        s = settle_regulation(resources=ids, capacity_w=cap_w, requested_w=req, score=score,
                              interval_s=interval_s, capacity_price_per_mw_h=cap_price,
                              performance_price_per_mw=perf_price)
        assert sum(s.by_resource.values()) == s.total
        reg_total += s.total
        cap_total += s.capacity_amount
        score_sum += float(score[cap_w > 0].mean())
        n_used += 1
        mw_h += cap_w.sum() / 1e6 * interval_s / 3600
    members = set(pq.read_table(a.run_dir / "vpp.parquet").to_pandas()["device_id"].tolist())
    sett = pq.read_table(a.run_dir / "settlements.parquet").to_pandas()
    pv_sales = sett[sett["device_id"].isin(members) & (sett["trade_amount"] > 0)]["trade_amount"].sum() / 1e6
    market = float(kpis.get("asset_revenue", 0.0)) + float(pv_sales)
    regulation = reg_total / 1e6
    dr_paid = float(kpis.get("dr_paid", 0.0))
    total = market + regulation + dr_paid
    share = {"market": market / total, "regulation": regulation / total, "dr": dr_paid / total}
    print(f"{n_used} of {n_int} intervals offered regulation ({len(dr)} DR intervals left out); "
          f"{mw_h:.2f} MW-h of capacity, mean score {score_sum / max(n_used, 1):.3f}")
    print(f"prices: capacity {a.capacity_price:g} per MW-h, performance {a.performance_price:g} per MW mileage")
    for key in ("market", "regulation", "dr"):
        val = {"market": market, "regulation": regulation, "dr": dr_paid}[key]
        print(f"{key:<11} {val:10.2f}  {share[key]:6.1%}  (paper {PAPER[key]:.0%})")
    print(f"market_share={share['market']:.3f} regulation_share={share['regulation']:.3f} "
          f"dr_share={share['dr']:.3f} regulation_revenue={regulation:.2f} capacity_mw_h={mw_h:.2f}")


if __name__ == "__main__":
    main()
