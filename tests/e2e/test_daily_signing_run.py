"""market.signing: daily against per_interval on the same run (reference ledger; the chain
ledger refuses daily): the same orders, trades, settlements and KPIs, with far fewer device
signatures (the manifest's counts)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests._quickstart import quickstart_with
from twin.run import run_scenario

_TABLES = ("orders", "trades", "settlements", "market")


def test_daily_signing_equals_per_interval(tmp_path: Path) -> None:
    out = {}
    for mode in ("per_interval", "daily"):
        s = quickstart_with(start="2016-06-15T11:00:00Z", duration_s=2 * 3600,
                            market__ledger="reference", market__signing=mode)
        out[mode] = tmp_path / mode
        run_scenario(s, out_dir=out[mode], progress=False)
    a, b = out["per_interval"], out["daily"]
    for t in _TABLES:
        ta, tb = pq.read_table(a / f"{t}.parquet"), pq.read_table(b / f"{t}.parquet")
        assert ta.num_rows > 0 and ta.equals(tb), t
    assert pq.read_table(b / "trueups.parquet").num_rows == 0  # relayed = signed readings
    ka, kb = (json.loads((d / "kpis.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ka.items() if k != "wall_time_s"} == {
        k: v for k, v in kb.items() if k != "wall_time_s"}
    signed = json.loads((b / "manifest.json").read_text())["signing"]
    n_orders = pq.read_table(a / "orders.parquet").num_rows
    n_devices = pq.read_table(a / "settlements.parquet").column("device_id").unique()
    assert signed["reading_batches"] == len(n_devices)  # one batch per device and day
    assert 0 < signed["schedules"] < n_orders / 2
