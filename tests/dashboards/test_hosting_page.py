"""The Hosting page: its data builder on a real study's tables (``twin.grid.hosting`` on a small
feeder, written by the CLI's writer) and the page under Streamlit's AppTest (no browser)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from twin.grid.der_functions import DerFunctions, VoltVar
from twin.grid.hosting import HostingInputs, run_hosting
from twin.studies.hosting_cli import write_hosting_tables
from twin.topology import write_topology

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dashboards"))
import hostingdata as hd
import twindash as td

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = pp.create_empty_network()
    mv = pp.create_bus(net, vn_kv=20.0)
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    prev = pp.create_bus(net, vn_kv=0.4)
    pp.create_transformer(net, mv, prev, std_type="0.25 MVA 20/0.4 kV")
    for _ in range(6):
        b = pp.create_bus(net, vn_kv=0.4)
        pp.create_line_from_parameters(net, prev, b, length_km=0.06, r_ohm_per_km=0.32, x_ohm_per_km=0.08,
                                       c_nf_per_km=0.0, max_i_ka=0.2)
        pp.create_load(net, b, p_mw=0.002, q_mvar=0.0005)
        pp.create_sgen(net, b, p_mw=0.0)
        prev = b
    T = 4
    inp = HostingInputs(net=net, load_p_mw=np.tile(net.load.p_mw.to_numpy(), (T, 1)),
                        load_q_mvar=np.tile(net.load.q_mvar.to_numpy(), (T, 1)), pv_pu=np.array([0, 0.6, 1.0, 0.3]),
                        sgen_rows=np.arange(6), pv_kw=np.full(6, 30.0), bus_label=net.sgen.bus.to_numpy())
    vv = DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"))
    res = run_hosting(inp, levels=[0.25, 0.5, 0.75, 1.0], samples=4, seed=3, controls={"none": None, "volt_var": vv},
                      bus_sizes_kw=[10, 40, 80])
    out = tmp_path_factory.mktemp("hosting")
    write_hosting_tables(res, out_dir=out, der="pv", steps=T, samples=4)
    write_topology(net, out)
    return out


def test_data_builder(study: Path) -> None:
    lanes = pd.read_parquet(study / "lanes.parquet")
    feeder = pd.read_parquet(study / "feeder_hosting.parquet")
    curves = hd.violation_curves(lanes)
    assert set(curves["mode"]) == {"none", "volt_var"} and len(curves) == 8
    for _, c in curves.groupby("mode"):  # nested placements: violations only grow with penetration
        assert np.all(np.diff(c["violated_percent"]) >= 0) and np.all(np.diff(c["placed_kw"]) > 0)
    assert c["penetration_percent"].tolist() == [25.0, 50.0, 75.0, 100.0]
    shares = hd.limit_shares(feeder)
    assert np.allclose(shares.groupby("mode")["share"].sum(), 100.0)
    pts = hd.bus_map(topology=json.loads((study / "topology.json").read_text()),
                     bus_hosting=pd.read_parquet(study / "bus_hosting.parquet"), mode="none")
    assert pts["candidate"].sum() == 6 and len(pts) == 8 and hd.der_label(feeder) == "PV"
    assert td.folder_kind(folder=study) == "run" and td.run_kind(folder=study) == "hosting"


def test_page_opens_on_the_study_with_unit_axis_titles(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_RUN_DIR", str(study))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Hosting" in at.title[0].value
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert len(specs) == 4  # violations, voltage, limits, map
    titles = [enc["title"] for s in specs[:3] for layer in s["layer"] for ch, enc in layer["encoding"].items()
              if ch in ("x", "y") and "title" in enc]
    assert any("(%)" in t for t in titles) and any("(kW)" in t for t in titles) and any("(p.u.)" in t for t in titles)
    assert {m.label for m in at.metric} >= {"PV hosted, median (none)", "PV hosted, median (volt_var)"}
