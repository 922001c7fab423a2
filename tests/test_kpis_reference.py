"""The README's KPI reference is the one the code defines (twin.kpis.KPIS)."""

from __future__ import annotations

import re
from pathlib import Path

from twin.kpis import KPI_COLUMNS, KPIS, kpi_reference
from twin.services.registry import SERVICES

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_kpi_reference_is_generated_from_the_code() -> None:
    text = README.read_text()
    block = re.search(r"<!-- kpi-reference:.*?-->\n(.*?)\n<!-- /kpi-reference -->", text, re.S)
    assert block is not None, "README.md has no KPI reference block"
    assert block.group(1) == kpi_reference(), "README KPI reference is stale: paste kpi_reference()"


def test_every_compared_and_service_kpi_has_a_meaning() -> None:
    assert set(KPI_COLUMNS) <= set(KPIS)
    for d in SERVICES:
        assert set(d.kpi_notes) <= set(KPIS), d.name


def test_every_service_kpi_it_computes_is_described() -> None:
    for d in SERVICES:
        assert set(d.kpis(lambda name: [])) <= set(d.kpi_notes), d.name
