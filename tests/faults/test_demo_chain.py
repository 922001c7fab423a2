"""`scenarios/faults_demo.yaml` on chain, a short window around its islands: the lateral
fault, the fault on line 6 that leaves storage_0 holding its section, and a charger outage
from the start, the upstream grid lost after one interval (then two islands at once, each
held by its own battery, with its own book and price, cleared by the chain's island books),
1 % lost readings and a short chain outage. The chain run equals the same window on the reference ledger (trades, settlements,
island rows, provisional settlements and true-ups) and conserves tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from twin.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.chain]
TABLES = ("trades", "settlements", "island_market", "islands", "provisional", "trueups")


def _window(tmp: Path, ledger: str) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "faults_demo.yaml").read_text())
    data.update(name=f"faults_demo_{ledger}", start="2016-06-15T17:45:00Z", duration_s=4 * 900)
    data["market"]["ledger"] = ledger
    f = data["faults"]
    f["lines"] = [{"element": 39, "at_s": [0], "repair": {"mean_s": 1800}},
                  {"element": 6, "at_s": [0], "repair": {"distribution": "fixed", "mean_s": 3600}}]
    f["upstream"] = [{"start_s": 900, "duration_s": 1800}]
    f["devices"] = [{"kind": "charger_outage", "target": "ev_2", "at_s": [0], "repair": {"mean_s": 3600}}]
    if ledger == "chain":
        f["chain"]["outages"] = [{"start_s": 1800, "duration_s": 2}]
    else:
        del f["chain"]
    path = tmp / f"{ledger}.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp / ledger), "--no-progress"]) == 0
    return tmp / ledger


def test_faults_demo_island_window_on_chain_equals_reference(tmp_path: Path) -> None:
    chain, ref = _window(tmp_path, "chain"), _window(tmp_path, "reference")
    manifest = json.loads((chain / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["tokens"]["conserved"]
    islands = pq.read_table(chain / "islands.parquet").to_pandas()
    # the demo's two islands at once (line 6 cut off storage_0's section, then the upstream
    # loss left storage_1 holding the rest), each its own battery, book and price
    both = islands[islands.groupby("interval")["island"].transform("size") == 2]
    assert not both.empty and (both.gf_p_mw > 0).all() and not both.collapsed.any()
    books = pq.read_table(chain / "island_market.parquet").to_pandas()
    split = books[books.interval.isin(both.interval) & (books.trades > 0)]
    assert (split.groupby("interval").size() == 2).any()
    assert split.groupby("interval").price_per_mwh.nunique().max() == 2  # two prices
    assert pq.read_table(chain / "chain_incidents.parquet").num_rows > 0
    for name in TABLES:
        a = pq.read_table(chain / f"{name}.parquet").to_pandas()
        b = pq.read_table(ref / f"{name}.parquet").to_pandas()
        cols = [c for c in b.columns if c not in ("creator", "created_s")]
        assert a[cols].reset_index(drop=True).equals(b[cols].reset_index(drop=True)), name
