"""Two processes over loopback: `twin hil serve` + `twin hil controller` close the loop.

The serve process runs a small scenario (``tests/hil/data/hil_e2e.yaml``: CIGRE LV, an
evening import peak, a community battery and a feeder meter) in scaled real time and holds
its clock until the controller connects (``--wait-client``). The controller, a second
process speaking only Modbus TCP, shaves the feeder's import with the battery. The same
scenario without a controller runs in this process meanwhile (as fast as possible; same
seed, so the same twin). With the controller the peak import is lower, and the battery's
discharge reached the agents' books (its state of charge ends lower).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from twin.hil.serve import serve
from twin.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "hil" / "data" / "hil_e2e.yaml"
RT = "0.005"  # 30-s HIL steps every 0.15 s of wall time: 30 min of twin time in 9 s
METER, BATTERY = 3, 2

pytestmark = pytest.mark.slow


def _wait_devices(out: Path, proc: subprocess.Popen[bytes], timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        f = out / "hil_devices.json"
        if f.is_file():
            return json.loads(f.read_text())
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "serve ended")
        time.sleep(0.05)
    raise TimeoutError("serve did not publish hil_devices.json")


def _meter_w(out: Path) -> dict[int, float]:
    t = pq.read_table(out / "hil.parquet").to_pandas()
    m = t[t.unit_id == METER]
    return dict(zip(m.time_s.astype(int), m.w.astype(float), strict=True))


def _final_soc(out: Path) -> float:
    a = pq.read_table(out / "agents.parquet").to_pandas()
    return float(a[a.agent == "storage_0"].sort_values("time_s").soc.iloc[-1])


def test_controller_closes_the_loop(tmp_path: Path) -> None:
    with_ctl, without = tmp_path / "with", tmp_path / "without"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "hil", "serve", str(SCENARIO), "--host", "127.0.0.1",
         "--port", "0", "--rt-factor", RT, "--wait-client", "240", "--out", str(with_ctl)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    ctl = None
    try:
        # the baseline runs here while the serve process starts (two cores, two jobs)
        serve(load_scenario(SCENARIO), out_dir=without, port=0, rt_factor=None)
        info = _wait_devices(with_ctl, proc)
        units = {d["kind"]: d["unit_id"] for d in info["devices"]}
        assert units == {"pv_inverter": 1, "battery": BATTERY, "meter": METER}
        ctl = subprocess.Popen(
            [sys.executable, "-m", "twin.cli", "hil", "controller", "--host", "127.0.0.1",
             "--port", str(info["port"]), "--unit", str(BATTERY), "--mode", "peak-shave",
             "--meter-unit", str(METER), "--import-limit-kw", "450", "--period", "0.05",
             "--duration", "200"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        serve_out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, serve_out.decode()
        ctl_out, _ = ctl.communicate(timeout=30)  # ends by itself when the server goes
        assert ctl.returncode == 0, ctl_out.decode()
    finally:
        for p in (proc, ctl):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
    log = f"serve:\n{serve_out.decode()}\ncontroller:\n{ctl_out.decode()}"
    writes = pq.read_table(with_ctl / "hil_writes.parquet").to_pandas()
    set_points = writes[(writes.exception_code == 0) & writes.points.str.contains("WSet")]
    assert len(set_points) > 10, log
    assert len(pq.read_table(without / "hil_writes.parquet")) == 0
    # from the first HIL step after the controller's first set-point on
    first = int(set_points.time_s.min()) + 60
    w_with, w_without = _meter_w(with_ctl), _meter_w(without)
    steps = [t for t in w_with if t >= first]
    assert len(steps) >= 20, log
    peak_with = max(w_with[t] for t in steps)
    peak_without = max(w_without[t] for t in steps)
    assert peak_with < peak_without - 10_000, (peak_with, peak_without, log)
    bat = pq.read_table(with_ctl / "hil.parquet").to_pandas()
    assert (bat[bat.unit_id == BATTERY].w > 10_000).any(), log  # discharged on command
    # the controls reached the agents model: the battery's books saw the discharge
    assert _final_soc(with_ctl) < _final_soc(without) - 0.02, log
