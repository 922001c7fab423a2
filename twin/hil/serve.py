"""``twin hil serve``: one scenario under mosaik, with its HIL devices on Modbus TCP.

The run is :func:`twin.run.run_scenario` with the HIL adapter put between the agents and
the grid (``extend_world``) and the Modbus server started once the feeder is built. The
results folder is the one of ``twin run`` plus ``hil_devices.json`` and the tables
``hil`` (per device and step), ``hil_writes`` (client writes, accepted or refused) and
``hil_deadlines`` (real-time deadline misses).
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.hil.books import IntervalBooks
from twin.hil.core import HILBank
from twin.hil.server import ModbusServer, ServerOptions
from twin.hil.server_process import ServerProcess
from twin.hil.timing import StepTiming, unfreeze_gc, warm_grid_kernels
from twin.hil.twin_side import (
    HILCoupling,
    MirroredDevice,
    book_elements,
    market_device_ids,
    resolve_devices,
)
from twin.results import write_json_atomic
from twin.scenario import Scenario

__all__ = ["ServeOutcome", "format_device_table", "serve"]


@dataclass
class ServeOutcome:
    run: Any  # twin.run.RunOutcome
    devices: list[dict[str, Any]]
    port: int
    step_timing: StepTiming = field(default_factory=StepTiming)
    server_stats: dict[str, int] = field(default_factory=dict)
    #: mosaik's real-time warnings ("Simulation too slow"): how many, and the worst lag
    rt_behind: dict[str, float] = field(default_factory=lambda: {"count": 0, "max_s": 0.0})


#: the interpreter's switch interval while a Modbus server thread shares the twin's GIL:
#: a request that arrives during a step waits about this long for the GIL at each of its
#: socket calls (each releases it, and the twin's thread takes it meanwhile)
SWITCH_INTERVAL_S = 0.001

_BEHIND = re.compile(r"Simulation too slow for real-time factor .* - ([0-9.eE+-]+)s behind time")


class _MosaikWarnings:
    """Turns mosaik's per-step real-time ``UserWarning`` into counted deadline misses.

    ``twin hil serve`` paces in the HIL adapter and runs mosaik without its real-time mode,
    so these should not occur; if mosaik does warn that a simulator fell behind, the
    warning is recorded (``ServeOutcome.rt_behind``, the
    summary line, ``hil_devices.json``'s ``rt_behind``), beside the HIL adapter's own
    per-step ``hil_deadlines`` table. Other warnings pass through unchanged.
    """

    def __init__(self, tally: dict[str, float]) -> None:
        self.tally = tally
        self._ctx = warnings.catch_warnings()

    def __enter__(self) -> _MosaikWarnings:
        self._ctx.__enter__()
        original = warnings.showwarning

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
            text = str(message)
            m = _BEHIND.search(text)
            if m is not None:
                self.tally["count"] += 1
                self.tally["max_s"] = max(self.tally["max_s"], float(m.group(1)))
                return
            if "persistent attribute vm_pu" in text:
                # the HIL's time-shifted voltages before the first power flow: the adapter
                # reports nominal voltage for that one step (documented, not an error)
                return
            original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.filterwarnings("always", message="Simulation too slow", category=UserWarning)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def format_device_table(devices: list[dict[str, Any]]) -> str:
    head = f"{'unit':>4}  {'device':<16} {'kind':<12} {'mirrors':<24} {'bus':>5}  models"
    lines = [head, "-" * len(head)]
    for d in devices:
        lines.append(f"{d['unit_id']:>4}  {d['device']:<16} {d['kind']:<12} {d['mirrors']:<24} "
                     f"{d['bus']:>5}  {' '.join(str(m) for m in d['models'])}")
    return "\n".join(lines)


def serve(scenario: Scenario, *, out_dir: Path, host: str = "127.0.0.1", port: int = 5020,
          rt_factor: float | None = 1.0, rt_strict: bool = False, until_s: int | None = None,
          scenario_path: str | None = None, progress: bool = False,
          on_status: Callable[[str], None] | None = None,
          wait_client_s: float = 0.0, server_process: bool = False) -> ServeOutcome:
    """Run ``scenario`` with its HIL devices served on ``host:port`` until the run ends.

    ``wait_client_s`` > 0: once the server listens, hold the twin's clock until a first
    client connects (at most that long), so a controller started next misses no step.
    ``server_process``: the Modbus server in its own process (twin.hil.server_process);
    False (default): a thread of this process sharing its GIL with the twin, which measured
    better on the 2-core machine (a separate process waits for a core; see README).
    """
    from twin.run import run_scenario

    if not scenario.hil.devices:
        raise ValueError("the scenario declares no HIL devices (hil.devices is empty)")
    if scenario.faults is not None:
        raise ValueError("faults: twin hil serve does not run fault processes (a HIL run settles "
                         "each interval at its end on the energy delivered per HIL step)")
    say = on_status or (lambda _m: None)
    out_dir = Path(out_dir)
    state: dict[str, Any] = {}
    step_timing = StepTiming(tolerance_s=scenario.hil.deadline_tolerance_s)
    step_s = scenario.hil.step_s or scenario.market.interval_s
    end_s = min(until_s or scenario.duration_s, scenario.duration_s)  # as twin.run computes it
    end_s -= end_s % scenario.market.interval_s

    def extend(world: Any, *, agents: Any, grid: Any, model: Any, recorder: Any,
               timings: dict[str, float]) -> None:
        if rt_factor:  # a long real-time run: the solver's numba load before the clock starts
            warm_grid_kernels(model.feeder.net, solves=end_s // step_s)
        mirrored: list[MirroredDevice] = resolve_devices(scenario, model.feeder)
        bank = HILBank([m.spec for m in mirrored])
        for name in ("hil", "hil_writes", "hil_deadlines"):  # row groups, off this thread
            recorder.stream(name)
        opts = ServerOptions(host=host, port=port, max_connections=scenario.hil.max_connections,
                             idle_timeout_s=scenario.hil.idle_timeout_s,
                             frame_timeout_s=scenario.hil.frame_timeout_s,
                             max_requests_per_s=scenario.hil.max_requests_per_s,
                             controller_host=scenario.hil.controller_host)
        server = (ServerProcess if server_process else ModbusServer)(bank, opts)
        server.start()
        state["server"] = server
        table = [m.describe() | {"models": list(bank.devices[m.spec.unit_id].map.model_ids),
                                 "registers": [40000, bank.devices[m.spec.unit_id].map.end - 1]}
                 for m in mirrored]
        state["devices"] = table
        write_json_atomic({"host": host, "port": server.port, "base_address": 40000,
                           "step_s": step_s, "rt_factor": rt_factor, "devices": table},
                          out_dir / "hil_devices.json")
        print(format_device_table(table), flush=True)
        say(f"Modbus TCP on {host}:{server.port} (SunSpec at 40000, one unit id per device)")
        if wait_client_s > 0:
            t_end = time.monotonic() + wait_client_s
            while server.stats.accepted == 0 and time.monotonic() < t_end:
                time.sleep(0.02)
            say("client connected; starting the clock" if server.stats.accepted
                else f"no client after {wait_client_s:g} s; starting the clock anyway")
        world.sim_config["HIL"] = {"python": "twin.cosim.hil_sim:HILSim"}
        coupling = HILCoupling(bank, mirrored, frequency_hz=model.tso.system_frequency_hz)
        books = IntervalBooks(book_elements(mirrored, model), interval_s=scenario.market.interval_s)
        hil = world.start("HIL", coupling=coupling, recorder=recorder, books=books,
                          end_s=end_s,
                          step_s=step_s, rt_factor=rt_factor, rt_strict=rt_strict,
                          deadline_tolerance_s=scenario.hil.deadline_tolerance_s,
                          timings=timings, step_timing=step_timing,
                          interval_s=scenario.market.interval_s,
                          device_ids=market_device_ids(mirrored, model)).HIL()
        world.connect(agents, hil, "element_power")
        world.connect(hil, grid, "element_power")
        world.connect(grid, hil, "vm_pu", time_shifted=True, initial_data={"vm_pu": None})
        # the controls in force reach the agents' dispatch at their next interval; the
        # element powers above carry them at the next HIL step; what the devices delivered
        # over interval k (hil_books) corrects k's readings and the batteries' SOC at (k+1)·T
        world.connect(hil, agents, "der_controls", "hil_books", time_shifted=True,
                      initial_data={"der_controls": [], "hil_books": {}})

    rt_behind: dict[str, float] = {"count": 0, "max_s": 0.0}
    # a Modbus thread shares the GIL with the twin: a short switch interval (default 5 ms)
    # bounds how long a request waits behind a step; restored when the run ends
    switch = sys.getswitchinterval()
    if not server_process:
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
    try:
        with _MosaikWarnings(rt_behind):
            outcome = run_scenario(scenario, out_dir=out_dir, scenario_path=scenario_path,
                                   until_s=until_s, progress=progress, on_status=say,
                                   rt_factor=None,  # the HIL adapter paces (see hil_sim)
                                   extend_world=extend, grid_step_s=step_s, settle_at_end=True)
    finally:
        sys.setswitchinterval(switch)
        unfreeze_gc()
        server = state.get("server")
        if server is not None:
            server.stop()
    stats = vars(state["server"].stats) if "server" in state else {}
    return ServeOutcome(run=outcome, devices=state.get("devices", []),
                        port=state["server"].port if "server" in state else port,
                        step_timing=step_timing, server_stats=dict(stats), rt_behind=rt_behind)
