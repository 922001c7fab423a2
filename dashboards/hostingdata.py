"""Data of the Hosting page (``views/hosting.py``), pure pandas: what ``twin hosting`` wrote.

``twin hosting SCENARIO --out DIR`` (``twin/studies/hosting_cli.py``) writes ``lanes``
(per control mode, penetration level and Monte Carlo sample: ``pv_kw`` placed, ``vm_max_pu``,
``vm_min_pu``, ``max_loading_percent``, the first ``limiting`` violation), ``feeder_hosting``
(per mode and sample: ``hosting_kw`` and its ``limiting`` violation), ``bus_hosting`` (per
mode and candidate bus), ``kpis.json`` and ``topology.json``. A ``der`` column says what was
placed (``pv`` or ``ev``; absent in older folders: PV).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["bus_map", "der_label", "limit_shares", "violation_curves"]

#: the violation kinds in the order the study ranks them
LIMITS = ("overvoltage", "thermal", "undervoltage", "unbalance", "none")


def der_label(df: pd.DataFrame | None) -> str:
    """``"PV"`` or ``"EV chargers"``: what the study placed."""
    if df is not None and "der" in df.columns and (df["der"] == "ev").any():
        return "EV chargers"
    return "PV"


def violation_curves(lanes: pd.DataFrame) -> pd.DataFrame:
    """Per control mode and penetration level: share of samples with a violation (%), the
    median PV / charger power placed (kW) and the median extreme voltages; sorted by level."""
    d = lanes.assign(violated=(lanes["limiting"] != "none").astype(float) * 100.0)
    g = d.groupby(["mode", "level"], as_index=False).agg(
        violated_percent=("violated", "mean"), placed_kw=("pv_kw", "median"),
        vm_max_pu=("vm_max_pu", "median"), vm_min_pu=("vm_min_pu", "median"),
        max_loading_percent=("max_loading_percent", "median"))
    g["penetration_percent"] = g["level"] * 100.0
    return g.sort_values(["mode", "level"]).reset_index(drop=True)


def limit_shares(feeder: pd.DataFrame) -> pd.DataFrame:
    """Per control mode and limiting violation: share of samples (%) whose hosting capacity
    that violation sets (``none``: the highest level placed without any)."""
    n = feeder.groupby("mode")["sample"].transform("count")
    d = feeder.assign(share=100.0 / n)
    out = d.groupby(["mode", "limiting"], as_index=False)["share"].sum()
    out["limiting"] = pd.Categorical(out["limiting"], categories=list(LIMITS), ordered=True)
    return out.sort_values(["mode", "limiting"]).reset_index(drop=True).assign(limiting=lambda x: x["limiting"].astype(str))


def bus_map(*, topology: dict[str, Any], bus_hosting: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Buses with coordinates and, for candidate buses, their hosting capacity (kW) and the
    limiting violation in ``mode`` (NaN / ``""`` elsewhere)."""
    buses = pd.DataFrame(topology["buses"])[["bus", "x", "y"]]
    hb = bus_hosting[bus_hosting["mode"] == mode][["bus", "hosting_kw", "limiting"]]
    out = buses.merge(hb, on="bus", how="left")
    out["candidate"] = out["hosting_kw"].notna()
    out["limiting"] = out["limiting"].fillna("")
    return out
