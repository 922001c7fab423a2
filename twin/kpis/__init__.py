"""The KPIs of a run: every KPI defined once, with its unit and meaning, computed from the
results tables.

:mod:`.metrics` holds the definitions (pure functions over Arrow tables, the compared KPIs of
``twin compare``); :mod:`.run` assembles ``kpis.json`` from them; :mod:`.reference` lists
every KPI's unit and meaning (the README's KPI reference). ``kpis.json``, ``twin compare``,
sweeps, ``twin regress`` and the dashboards all read these numbers.
"""

from twin.kpis.metrics import (
    KPI_COLUMNS,
    KPI_NOTES,
    NA,
    ChainPricing,
    RunInputs,
    feeder_kpis,
    game_kpis,
)
from twin.kpis.reference import KPIS, kpi_reference
from twin.kpis.run import KPI_READS, compute_kpis, kpi_reads, read_tables

__all__ = [
    "KPIS",
    "KPI_COLUMNS",
    "KPI_NOTES",
    "KPI_READS",
    "NA",
    "ChainPricing",
    "RunInputs",
    "compute_kpis",
    "feeder_kpis",
    "game_kpis",
    "kpi_reads",
    "kpi_reference",
    "read_tables",
]
