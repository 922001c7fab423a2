"""market.signing: daily against per_interval on the same run (reference ledger): the same
orders, trades, settlements and KPIs, with far fewer device signatures (the manifest's
counts); and daily signing on chain (DailySchedules on a real Anvil) equals it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests._quickstart import quickstart_with
from twin.run import run_scenario

_TABLES = ("orders", "trades", "settlements", "market")


def test_daily_signing_equals_per_interval(tmp_path: Path) -> None:
    out = {}
    for mode, ledger in (("per_interval", "reference"), ("daily", "reference"), ("daily", "chain")):
        s = quickstart_with(start="2016-06-15T11:00:00Z", duration_s=3600,
                            market__ledger=ledger, market__signing=mode)
        out[f"{mode}_{ledger}"] = tmp_path / f"{mode}_{ledger}"
        run_scenario(s, out_dir=out[f"{mode}_{ledger}"], progress=False)
    # on chain the same rows (schedules verified once, orders placed by their Merkle proofs,
    # relayed readings trued up by the signed batches)
    c, r = out.pop("daily_chain"), out["daily_reference"]
    for t in (*_TABLES, "trueups"):
        assert pq.read_table(c / f"{t}.parquet").equals(pq.read_table(r / f"{t}.parquet")), t
    out = {"per_interval": out["per_interval_reference"], "daily": out["daily_reference"]}
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
