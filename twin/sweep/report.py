"""The summary table printed at the end of a sweep."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

__all__ = ["summary"]

#: KPIs shown per run in the summary (all of them are in kpis.parquet).
HEADLINE = ("energy_traded_kwh", "mean_price_per_mwh", "vm_min_pu", "max_line_loading_percent")
MAX_ROWS = 30


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def summary(kpis: pa.Table, *, parameters: list[str], wall_s: float, skipped: int) -> str:
    rows = kpis.to_pylist()
    heads = [h for h in HEADLINE if h in kpis.column_names]
    cols = ["run_id", *parameters, "seed", "status", "wall_s", *heads]
    failed = [r for r in rows if r["status"] != "complete"]
    shown = (rows if len(rows) <= MAX_ROWS else failed[:MAX_ROWS] or rows[:MAX_ROWS])
    cells = [[_fmt(r.get(c)) for c in cols] for r in shown]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    lines = ["", "== gridtwin sweep summary ==",
             "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more rows in kpis.parquet")
    counts = Counter(r["status"] for r in rows)
    lines.append("")
    lines.append(f"runs: {len(rows)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
                 + f"  (skipped as already complete: {skipped})  wall time {wall_s:.1f} s")
    lines += [f"  {r['run_id']} {r['status']}: {r['error']}" for r in failed[:MAX_ROWS]]
    return "\n".join(lines)
