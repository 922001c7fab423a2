"""Writing the results tables over a long run: CPU seconds per simulated day of flushes alone.

The quickstart's twelve non-empty tables at its row rates (rows per flush of 8 intervals, from
a 12-hour run), 12 flushes a simulated day, through :class:`twin.results.RunRecorder` (as the
twin's checkpoints call it: ``flush()`` waits). Rows come as dicts (``add``), the slower of the
recorder's two inputs. A flush's cost should not grow with the rows written before it: the
last day against the second (the first creates the files).

``python bench/results_flush.py [--days 30] [--root OLD_TREE]``; last line ``key=value``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the quickstart's rows per flush (8 intervals of 15 min) by table
ROWS_PER_FLUSH = {"agents": 408, "bus": 352, "line": 336, "orders": 332, "settlements": 400,
                  "trades": 138, "chain": 47, "grid": 8, "dso": 8, "market": 8, "events": 10,
                  "forecasts": 20}


def _rows(schema, n: int, start: int) -> list[dict]:
    def value(typ: str, i: int):
        return {"int64": i, "double": i * 0.001, "bool": i % 2 == 0}.get(typ, f"s{i % 50}")

    types = [(f.name, str(f.type)) for f in schema]
    return [{name: value(typ, start + i) for name, typ in types} for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--root", default=str(ROOT), help="project tree to measure (e.g. an older checkout)")
    args = ap.parse_args()
    sys.path.insert(0, args.root)
    from twin.results import SCHEMAS, RunRecorder

    batches = {name: [_rows(SCHEMAS[name], n, k * n) for k in range(12)]
               for name, n in ROWS_PER_FLUSH.items()}
    per_day = []
    with tempfile.TemporaryDirectory(prefix="results-flush-") as tmp:
        rec = RunRecorder(Path(tmp))
        for _day in range(args.days):
            t0 = time.process_time()
            for k in range(12):
                for name, rows in batches.items():
                    rec.add(name, rows[k])
                rec.flush()
            per_day.append(time.process_time() - t0)
        rec.close()
    print(" ".join(f"{x:.2f}" for x in per_day))
    day2, last = per_day[1], per_day[-1]
    print(f"days={args.days} cpu_day2_s={day2:.3f} cpu_last_day_s={last:.3f} "
          f"cpu_max_day_s={max(per_day):.3f} last_x_day2={last / day2:.2f}")


if __name__ == "__main__":
    main()
