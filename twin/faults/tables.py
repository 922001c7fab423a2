"""Results tables of the faults inside a run (merged into :data:`twin.results.SCHEMAS`)."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["FAULT_TABLES"]

_i64, _f64, _str = pa.int64(), pa.float64(), pa.string()

FAULT_TABLES: dict[str, pa.Schema] = {
    # one row per expected meter reading (twin.faults.meter_data)
    "meter_data": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("device_id", _i64), ("acquired", pa.bool_()),
         ("attempts", _i64), ("latency_s", _f64), ("cause", _str), ("arrives_interval", _i64)]
    ),
    # devices settled on an estimate (twin.market.provisional)
    "provisional": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("device_id", _i64), ("estimated_wh", _i64),
         ("traded_wh", _i64)]
    ),
    "trueups": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("device_id", _i64), ("owner", _i64),
         ("estimated_wh", _i64), ("metered_wh", _i64), ("delta_wh", _i64), ("amount", _i64),
         ("paid", _i64), ("debt", _i64)]
    ),
    # every incident of a flaky chain (twin.faults.chain_retry): what, when, how long
    "chain_incidents": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("kind", _str), ("started_wall_s", _f64),
         ("recovered_wall_s", _f64), ("duration_s", _f64), ("attempts", _i64),
         ("method", _str), ("detail", _str)]
    ),
    # submission -> receipt of every transaction the twin sent (chain runs with faults.chain)
    "tx_latency": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("tx_hash", _str), ("function", _str),
         ("latency_s", _f64), ("sends", _i64)]
    ),
}
