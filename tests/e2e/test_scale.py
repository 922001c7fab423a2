"""Households at scale: a feeder loaded far beyond what it carries fails the run clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests._quickstart import quickstart_with
from twin.cosim.grid_sim import GridDiverged, check_plausible
from twin.run import run_scenario


def test_check_plausible_names_the_worst_bus() -> None:
    check_plausible(np.array([0.95, 1.0, 1.08]), bus_ids=[3, 4, 5], time_s=0)
    with pytest.raises(GridDiverged, match=r"1\.600 p\.u\. at bus 7 at t=900s \(2 buses"):
        check_plausible(np.array([1.0, 1.4, 1.6]), bus_ids=[5, 6, 7], time_s=900)
    with pytest.raises(GridDiverged, match=r"nan p\.u\. at bus 1"):
        check_plausible(np.array([1.0, np.nan]), bus_ids=[0, 1], time_s=0)


def test_overloaded_feeder_fails_the_run(tmp_path: Path) -> None:
    """2,000 households, all with 15 kWp PV, on the 1-LV-semiurb4 feeder at noon: the
    power flow has no plausible solution and the run fails (it used to "succeed")."""
    s = quickstart_with(
        start="2016-06-15T11:00:00Z", duration_s=900, market__ledger="reference",
        agents__households__count=2000,
        agents__households__pv={"share": 1.0, "kwp_min": 15, "kwp_max": 15},
        agents__evs__count=0,
    )
    with pytest.raises(GridDiverged, match="feeder cannot carry"):
        run_scenario(s, out_dir=tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "GridDiverged" in manifest["error"]
