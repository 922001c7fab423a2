"""Results tables of faults inside a run (merged into :data:`twin.results.SCHEMAS`)."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["fault_tables"]

_i64, _f64, _str, _bool = pa.int64(), pa.float64(), pa.string(), pa.bool_()


def fault_tables() -> dict[str, pa.Schema]:
    """``faults``: every fault, protection and switching event; ``interruptions``: customers
    without supply between fault events, exact times (energy not served, Wh); ``outages``: one
    row per interval the feeder is not whole (customers shed in islands and their energy not
    served, Wh; de-energized buses at the interval's midpoint); ``islands``:
    one row per (interval, island held by a grid-forming battery); ``fault_grid``: the power
    flow of each interval with a changed topology (the grid-forming batteries' power as the
    islands' slack, MW, generator convention); ``island_market``: one row
    per (interval, market book) while the market clears per island (price micro/MWh); then the
    meter-data and chain tables (``meter_data``, ``provisional``, ``trueups``,
    ``chain_incidents``, ``tx_latency``)."""
    return {
        "faults": pa.schema([("time_s", _f64), ("interval", _i64), ("kind", _str), ("element_kind", _str),
                             ("element", _i64), ("fault_id", _i64), ("fault_kind", _str)]),
        "interruptions": pa.schema([("time_s", _f64), ("end_s", _f64), ("interval", _i64),
                                    ("customers_total", _i64), ("customers_off", _i64), ("new_interruptions", _i64), ("ens_wh", _f64),
                                    ("dead_buses", _i64)]),
        "outages": pa.schema([("time_s", _i64), ("interval", _i64), ("customers_shed", _i64),
                              ("customers_total", _i64), ("new_interruptions", _i64), ("ens_wh", _f64),
                              ("pv_curtailed_wh", _f64), ("dead_buses", _i64), ("island_buses", _i64),
                              ("islands", _i64)]),
        "islands": pa.schema([("time_s", _i64), ("interval", _i64), ("island", _i64), ("buses", _i64),
                              ("customers", _i64), ("demand_mw", _f64), ("generation_mw", _f64),
                              ("gf_p_mw", _f64), ("gf_soc", _f64), ("shed_classes", _i64),
                              ("collapsed", _bool), ("pv_curtailed_mw", _f64)]),
        "fault_grid": pa.schema([("time_s", _i64), ("energized_buses", _i64), ("dead_buses", _i64),
                                 ("grid_forming_p_mw", _f64), ("ext_grid_p_mw", _f64), ("line_pl_mw", _f64)]),
        "island_market": pa.schema([("time_s", _i64), ("interval", _i64), ("island", _i64), ("devices", _i64),
                                    ("trades", _i64), ("volume_wh", _i64), ("price_per_mwh", _i64)]),
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
