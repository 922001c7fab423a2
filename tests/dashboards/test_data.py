"""The dashboards' data access (lazy, cached, invalidated on rewrite) and the topology file
`twin run` writes for them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from twin.results import write_table_atomic
from twin.topology import feeder_topology, write_topology

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dashboards"))
import twindash as td


def _table(path: Path, offset: int) -> None:
    write_table_atomic(pa.table({"time_s": [0, 0, 900, 900], "bus": [0, 1, 0, 1],
                                 "vm_pu": [1.0 + offset, 0.99, 1.01, 0.98]}), path)


def test_reads_project_filter_and_refresh_when_the_file_changes(tmp_path):
    _table(tmp_path / "bus.parquet", 0)
    df = td.read_table(folder=tmp_path, name="bus", columns=("bus", "vm_pu", "not_there"),
                       filters=(("time_s", "==", 900),))
    assert list(df.columns) == ["bus", "vm_pu"] and df["vm_pu"].tolist() == [1.01, 0.98]
    assert td.table_rows(folder=tmp_path, name="bus") == 4
    assert td.table_values(folder=tmp_path, name="bus", column="time_s") == [0, 900]
    assert td.read_table(folder=tmp_path, name="bus", filters=(("bus", "in", [1]),))["vm_pu"].tolist() == [0.99, 0.98]
    _table(tmp_path / "bus.parquet", 5)  # a running twin rewrites the table
    assert td.read_table(folder=tmp_path, name="bus", columns=("vm_pu",))["vm_pu"].iloc[0] == 6.0


def test_absent_or_corrupt_tables_read_as_none(tmp_path):
    assert td.read_table(folder=tmp_path, name="bus") is None and td.table_rows(folder=tmp_path, name="bus") is None
    (tmp_path / "line.parquet").write_bytes(b"not parquet")
    assert td.read_table(folder=tmp_path, name="line") is None and td.table_rows(folder=tmp_path, name="line") is None
    (tmp_path / "kpis.json").write_text("{half")
    assert td.read_json(path=tmp_path / "kpis.json") is None


@pytest.mark.parametrize("contents,kind", [
    ((), "missing"), (("manifest.json",), "run"), (("kpis.parquet",), "sweep"),
    (("runs/",), "sweep"), (("manifest.json", "runs/"), "sweep"),
    (("compare.parquet", "runs/"), "compare"),
])
def test_folder_kind(tmp_path, contents, kind):
    for name in contents:
        (tmp_path / name).mkdir() if name.endswith("/") else (tmp_path / name).write_text("{}")
    assert td.folder_kind(folder=tmp_path) == kind


def _net(*, geo: bool):
    import pandapower as pp

    net = pp.create_empty_network()
    coords = [(10.0, 50.0), (10.001, 50.0), (10.002, 50.001), (10.002, 49.999), (10.003, 50.0)]
    b = [pp.create_bus(net, vn_kv=20.0 if i == 0 else 0.4, name=f"b{i}",
                       geodata=coords[i] if geo else None) for i in range(5)]
    pp.create_ext_grid(net, bus=b[0])
    pp.create_transformer(net, hv_bus=b[0], lv_bus=b[1], std_type="0.4 MVA 20/0.4 kV")
    for f, t in ((1, 2), (1, 3), (3, 4)):
        pp.create_line(net, from_bus=b[f], to_bus=b[t], length_km=0.1, std_type="NAYY 4x150 SE")
    return net


@pytest.mark.parametrize("geo", [True, False])
def test_topology_file_has_buses_lines_and_coordinates(tmp_path, geo):
    write_topology(_net(geo=geo), tmp_path)
    topo = json.loads((tmp_path / "topology.json").read_text())
    assert topo["layout"] == ("geodata" if geo else "computed")
    assert [b["bus"] for b in topo["buses"]] == [0, 1, 2, 3, 4]
    assert [(ln["from_bus"], ln["to_bus"]) for ln in topo["lines"]] == [(1, 2), (1, 3), (3, 4)]
    assert topo["trafos"][0]["hv_bus"] == 0 and topo["slack_buses"] == [0]
    xy = {b["bus"]: (b["x"], b["y"]) for b in topo["buses"]}
    assert len(set(xy.values())) == 5  # every bus drawn at its own place
    if not geo:  # radial layout: x = hops from the slack bus
        assert [xy[i][0] for i in range(5)] == [0.0, 1.0, 2.0, 2.0, 3.0]


def test_topology_of_a_net_with_geodata_keeps_it():
    topo = feeder_topology(_net(geo=True))
    assert topo["buses"][2]["x"] == pytest.approx(10.002)
    assert topo["buses"][2]["y"] == pytest.approx(50.001)
