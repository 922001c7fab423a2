"""Size of a complete chain run's results folder, and what the resume checkpoints weighed
before a complete run deletes them (issue 20: a 3-day folder was 256 MB, 168 MB of it
checkpoints kept after the run completed).

Runs the quickstart for ``--days`` days (default 3) with the default checkpoint cadence,
watches the folder while the run goes on, and reports the final size, the size of the last
checkpoint files (what was kept before), the peak during the run and the wall time.
``.venv/bin/python bench/results_size.py [--days 3] [--out DIR]``; last line key=value.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_FILES = ("chain_checkpoint_a.json.gz", "chain_checkpoint_b.json.gz", "checkpoint.json")


def _size(folder: Path, names: tuple[str, ...] | None = None) -> int:
    total = 0
    for f in folder.rglob("*"):
        try:
            if f.is_file() and (names is None or f.name in names):
                total += f.stat().st_size
        except OSError:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="twin-size-"))
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data.update(name=f"quickstart_{args.days}d", duration_s=args.days * 86_400)
    scen = tmp / "scenario.yaml"
    scen.write_text(yaml.safe_dump(data))
    out = args.out or tmp / "out"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "twin"), "run", str(scen), "--out",
                             str(out), "--no-progress", "--force"], stdout=subprocess.DEVNULL)
    checkpoints = peak = 0
    while proc.poll() is None:
        if out.is_dir():
            checkpoints = _size(out, CHECKPOINT_FILES) or checkpoints
            peak = max(peak, _size(out))
        time.sleep(0.5)
    wall_s = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    if proc.returncode != 0 or manifest["status"] != "complete":
        print(f"run failed: exit {proc.returncode}, status {manifest['status']}", file=sys.stderr)
        return 1
    final = _size(out)
    left = _size(out, CHECKPOINT_FILES)
    print(f"days={args.days} complete_folder_mb={final / 1e6:.1f} "
          f"checkpoints_before_cleanup_mb={checkpoints / 1e6:.1f} "
          f"folder_before_cleanup_mb={(final + checkpoints) / 1e6:.1f} "
          f"checkpoints_left_mb={left / 1e6:.1f} peak_during_run_mb={peak / 1e6:.1f} "
          f"wall_s={wall_s:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
