"""gridtwin dashboard (foundation page): KPIs and voltages of one run folder.

Started by ``twin dashboard DIR``; reads the results folder only (never writes).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import streamlit as st


def _run_dir() -> Path:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path,
                        default=Path(os.environ.get("TWIN_RUN_DIR", "results/quickstart")))
    args, _ = parser.parse_known_args()
    return args.dir


@st.cache_data
def _read_json(path: str) -> dict:
    return json.loads(Path(path).read_text())


@st.cache_data
def _read_table(path: str, columns: tuple[str, ...]):
    return pq.read_table(path, columns=list(columns)).to_pandas()


def main() -> None:
    st.set_page_config(page_title="gridtwin", layout="wide")
    run_dir = _run_dir()
    st.title("gridtwin run overview")
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        st.error(f"No results folder at {run_dir} (manifest.json missing). Run `twin run` first.")
        return
    manifest = _read_json(str(manifest_path))
    st.caption(f"{manifest.get('scenario_name')} · status {manifest.get('status')} · "
               f"scenario {manifest.get('scenario_hash', '')[:12]} · seed {manifest.get('seed')}")
    if manifest.get("status") != "complete":
        st.warning(f"Run {manifest.get('status')}: {manifest.get('error')} "
                   f"(stopped at t = {manifest.get('stopped_at_time_s')} s)")
    kpi_path = run_dir / "kpis.json"
    if kpi_path.is_file():
        k = _read_json(str(kpi_path))
        cols = st.columns(4)
        cols[0].metric("Energy traded", f"{k.get('energy_traded_kwh', 0):.1f} kWh")
        cols[1].metric("Mean clearing price", f"{k.get('mean_price_per_mwh', 0):.2f} /MWh")
        cols[2].metric("Voltage range", f"{k.get('vm_min_pu', 0):.3f}–{k.get('vm_max_pu', 0):.3f} p.u.")
        cols[3].metric("Curtailed by DSO", f"{k.get('curtailed_kwh', 0):.1f} kWh")
        cols = st.columns(4)
        cols[0].metric("Max line loading", f"{k.get('max_line_loading_percent', 0):.1f} %")
        cols[1].metric("Trades", f"{int(k.get('trades', 0))}")
        cols[2].metric("Tokens", "conserved" if k.get("tokens_conserved") == 1.0 else "check failed")
        cols[3].metric("Wall time", f"{k.get('wall_time_s', 0):.1f} s")
    bus_path = run_dir / "bus.parquet"
    if bus_path.is_file():
        st.subheader("Bus voltages over the day")
        bus = _read_table(str(bus_path), ("time_s", "bus", "vm_pu"))
        band = bus.groupby("time_s")["vm_pu"].agg(["min", "mean", "max"])
        band.index = band.index / 3600.0
        band.index.name = "hour"
        st.line_chart(band, x_label="hour", y_label="vm_pu")
    else:
        st.info("bus.parquet not written yet.")


main()
