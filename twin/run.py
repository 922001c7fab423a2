"""One scenario run end to end: feeder, agents, ledger, mosaik world, results folder.

:func:`run_scenario` is what ``twin run`` calls. mosaik is the only time loop: the three
adapters in :mod:`twin.cosim` step the agents, the market (ledger) and the grid once per
market interval. Whatever happens (normal end, error, Ctrl-C) the tables written so far
are flushed atomically, the manifest says where the run stopped, and Anvil is stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin import __version__
from twin.grid.der_runtime import feeder_der_devices
from twin.kpis import RunInputs, compute_kpis, kpi_reads, read_tables
from twin.lifecycle import interrupt_reason, interrupts_not_swallowed, process_identity
from twin.market.audit import drain_tx_log, token_audit
from twin.market.device_signers import DeviceSigners
from twin.market.step import MarketLog
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT
from twin.results import DiskFull, RunRecorder, write_json_atomic
from twin.run_game import run_game
from twin.run_ledger import FUND_WEI, bond_manifest, fund_and_register, open_ledger, write_abis
from twin.run_outcome import RunOutcome, git_sha
from twin.scenario import Scenario
from twin.services.base import enabled_services, plan_services
from twin.topology import write_topology

__all__ = ["FUND_WEI", "RunOutcome", "resume_run", "run_scenario"]

#: While a run goes on, the tables are flushed (and a chain run checkpointed for
#: ``twin run --resume``) when this much wall time has passed since the last flush ...
CHECKPOINT_WALL_S = 10.0
#: ... or after this many market intervals, whichever comes first.
CHECKPOINT_INTERVALS = 8


def run_scenario(
    scenario: Scenario,
    *,
    out_dir: Path,
    scenario_path: str | None = None,
    rpc_url: str | None = None,
    funder_key: str | None = None,
    until_s: int | None = None,
    progress: bool = True,
    on_status: Callable[[str], None] | None = None,
    rt_factor: float | None = None,
    extend_world: Callable[..., None] | None = None,
    grid_step_s: int | None = None,
    settle_at_end: bool = False,
    resume: Any = None,
    checkpoint_every_s: float | None = None,
    checkpoint_every_intervals: int | None = None,
) -> RunOutcome:
    """Run ``scenario`` and write its results folder to ``out_dir``.

    ``rt_factor``: wall seconds per simulated second (mosaik real-time mode; None: as fast
    as possible). ``extend_world(world, agents=, grid=, model=, recorder=, timings=)`` adds
    simulators and must connect the agents' ``element_power`` to the grid (``twin hil serve``
    puts the HIL devices in between); without it the agents feed the grid directly.
    ``grid_step_s``: power-flow cadence when finer than the market interval (HIL step).
    ``settle_at_end``: interval ``k`` settles at ``(k + 1)·T`` on readings the agents correct
    by the HIL's ``hil_books`` (the world runs one settlement step past the end).
    ``checkpoint_every_s`` / ``checkpoint_every_intervals``: flush and checkpoint at least
    this often (defaults :data:`CHECKPOINT_WALL_S`, :data:`CHECKPOINT_INTERVALS`).
    A resumed run (``resume``) rewrites no table before its replay has passed the point
    where the stopped run stopped; a complete run deletes its resume checkpoints.
    """
    if scenario.game is not None:  # a cooperative-game scenario: no feeder day
        return run_game(scenario, out_dir=Path(out_dir), scenario_path=scenario_path)
    import mosaik

    from twin.agents.model import FeederModel
    from twin.grid.feeders import build_feeder

    say = on_status or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    duration_s = min(until_s or scenario.duration_s, scenario.duration_s)
    duration_s -= duration_s % scenario.market.interval_s
    if duration_s <= 0:
        raise ValueError(f"--until must cover at least one market interval ({scenario.market.interval_s} s)")
    n_intervals = duration_s // scenario.market.interval_s
    manifest: dict[str, Any] = {
        "scenario_name": scenario.name,
        "scenario_file": scenario_path,
        "scenario": scenario.model_dump(mode="json"),
        "scenario_hash": scenario.digest(),
        "run_id": resume.run_id if resume is not None else uuid.uuid4().hex[:16],
        "process": process_identity(),  # a reader shows a `running` run whose process is gone as crashed
        "seed": scenario.seed,
        "package_version": __version__,
        "git_sha": git_sha(),
        "start_time": scenario.start.astimezone(UTC).isoformat(),
        "started_at": datetime.now(UTC).isoformat(),
        "duration_s": duration_s,
        "interval_s": scenario.market.interval_s,
        "status": "running",
        "stopped_at_time_s": int(resume.stopped_at_time_s) if resume is not None else 0,
        "tables": [],
    }
    write_json_atomic(manifest, out_dir / "manifest.json")
    recorder = RunRecorder(out_dir)
    if resume is not None:  # the stopped run's chain incidents (the outage that stopped it)
        _carry_fault_rows(out_dir, recorder)
    log = MarketLog()
    timings: dict[str, float] = {}
    interval_s = scenario.market.interval_s
    resume_from_s = int(resume.stopped_at_time_s) if resume is not None else 0

    def held() -> bool:
        """A resumed run keeps the stopped run's tables until its replay has passed them."""
        return (log.last_settled + 1) * interval_s < resume_from_s

    say("building feeder and agents")
    rng = np.random.default_rng(scenario.seed)
    feeder = build_feeder(scenario=scenario, rng=rng)
    from twin.agents.outages import attach
    from twin.faults.setup import FaultTargetError, prepare
    from twin.scenario import ScenarioError

    try:  # faults: (twin/faults) targets checked, ties added, SimPy fault processes run up front
        faults = prepare(scenario, feeder=feeder, rng=rng, duration_s=duration_s)
    except FaultTargetError as exc:  # nothing ran: the manifest says why
        err = ScenarioError(scenario_path or scenario.name, exc.problems)
        manifest.update(status="failed", error=str(err), finished_at=datetime.now(UTC).isoformat())
        write_json_atomic(manifest, out_dir / "manifest.json")
        raise err from None
    write_topology(feeder.net, out_dir)  # the dashboards draw the feeder without pandapower
    model = FeederModel(scenario=scenario, feeder=feeder, rng=rng)
    if faults is not None:
        attach(faults, model=model, scenario=scenario)
    timings["setup_grid_agents_s"] = time.perf_counter() - t0
    n_accounts = max([OPERATOR_ACCOUNT, DSO_ACCOUNT, *model.accounts]) + 1
    # market services (value layer): their extra accounts (asset investors) come after
    plan = plan_services(scenario, model=model, first_account=n_accounts)
    n_accounts += len(plan.all_accounts)
    services: Any = None
    status = "failed"
    error: str | None = None
    try:
        say(f"starting the {scenario.market.ledger} ledger")
        t_open = time.perf_counter()
        with open_ledger(scenario, out_dir, n_accounts, rpc_url, resume,
                          funder_key=funder_key) as (ledger, chain_info):
            manifest["chain"] = chain_info
            t_chain = time.perf_counter()
            timings["open_ledger_s"] = t_chain - t_open  # a chain: Anvil, deployment, gas money
            minted = fund_and_register(ledger, scenario, model)
            chain_info["imbalance_bond"] = bond_manifest(ledger, model.devices)  # per rating
            # every device signs its own orders and meter readings; the operator relays them
            signers = _signers(scenario, model)
            signers.bind(ledger)
            services = plan.build(ledger=ledger, chain=chain_info["ledger"] == "chain")
            if hasattr(ledger, "checked"):  # a resumed reference run checks them too
                ledger.services = services
            timings["setup_ledger_s"] = time.perf_counter() - t_chain
            if chain_info["ledger"] == "chain":
                write_abis(ledger, out_dir)
                if services.contracts():
                    chain_info["value_contracts"] = services.contracts()
                    for name in sorted({n.split(":")[0] for n in services.contracts()}):
                        write_json_atomic(ledger.compiled[name].abi, out_dir / "abi" / f"{name}.json")
            write_json_atomic(manifest, out_dir / "manifest.json")
            recorder.add("chain", drain_tx_log(ledger, interval_s=scenario.market.interval_s))
            say(f"running {n_intervals} intervals under mosaik")
            t_world = time.perf_counter()
            try:
                _run_world(mosaik, scenario, model=model, net=feeder.net, ledger=ledger,
                           recorder=recorder, log=log, n_intervals=n_intervals,
                           duration_s=duration_s, progress=progress, timings=timings,
                           rt_factor=rt_factor, extend_world=extend_world,
                           grid_step_s=grid_step_s, services=services, signers=signers,
                           faults=faults, settle_at_end=settle_at_end, checkpoints=_Checkpoints(
                               every_s=CHECKPOINT_WALL_S if checkpoint_every_s is None
                               else checkpoint_every_s,
                               every_intervals=checkpoint_every_intervals or CHECKPOINT_INTERVALS,
                               held=held, chain=_chain_checkpoint(
                                   ledger, chain_info, out_dir, scenario,
                                   run_id=manifest["run_id"], n_accounts=n_accounts,
                                   services=services)))
                status = "complete"
                if getattr(signers, "daily", False):  # what daily signing cost the devices
                    manifest["signing"] = {"mode": "daily", **getattr(signers, "n_signed", {})}
            finally:
                timings["world_s"] = time.perf_counter() - t_world
                gc.unfreeze()  # what the market step froze (twin.cosim.market_sim) is collectable again
                _drain_fault_log(ledger, recorder, k=log.last_settled + 1, interval_s=interval_s)
                # Conservation is checked on the ledger's own books, even after an error.
                manifest["tokens"] = token_audit(
                    ledger, accounts=range(n_accounts), minted=minted,
                    value_holdings=services.value_holdings() if services else 0,
                    wallet_adjustments=services.wallet_adjustments() if services else None)
    except KeyboardInterrupt as exc:
        status = "interrupted"
        error = interrupt_reason(exc)
        raise
    except DiskFull as exc:
        error = str(exc)
        raise
    except BaseException as exc:
        if getattr(exc, "resumable", False):  # faults.chain: a chain outage beyond its deadline
            status, error = "interrupted", f"chain outage: {exc}"
            manifest["resumable"] = True
        else:
            error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if "world_s" in timings:  # token audit + stopping the ledger (Anvil dumps its state)
            timings["teardown_s"] = time.perf_counter() - t_world - timings["world_s"]
        t_flush = time.perf_counter()
        kept = held()
        disk_full: DiskFull | None = None
        kpis: dict[str, float] = {}
        wall_s = time.perf_counter() - t0
        try:
            if not kept:
                recorder.close()  # streamed tables (twin hil serve) are put in place here
                timings["flush_s"] = time.perf_counter() - t_flush
                wall_s = time.perf_counter() - t0
                t_kpis = time.perf_counter()
                kpis = compute_kpis(read_tables(out_dir, columns=kpi_reads(plan.enabled)),
                                    inputs=dataclasses.replace(
                                        RunInputs.of(scenario), n_intervals=n_intervals),
                                    tokens=manifest.get("tokens"), services=plan.enabled)
                kpis["wall_time_s"] = round(wall_s, 3)
                timings["kpis_s"] = time.perf_counter() - t_kpis  # tables read back + KPIs
                write_json_atomic(kpis, out_dir / "kpis.json")
        except DiskFull as exc:  # the tables already on disk stay as they were
            disk_full, status, error = exc, "failed", str(exc)
        if kept and status != "complete":
            error = (f"{error}; the resumed run stopped before passing the point where the "
                     f"stopped run had stopped ({resume_from_s} s): its tables are unchanged")
        if status == "complete":
            _delete_checkpoints(out_dir)
        manifest.update(
            status=status,
            error=error,
            stopped_at_time_s=max((log.last_settled + 1) * interval_s, resume_from_s)
            if status != "complete" else duration_s,
            finished_at=datetime.now(UTC).isoformat(),
            tables=sorted(p.stem for p in out_dir.glob("*.parquet")),
            timings_s={k: round(v, 3) for k, v in timings.items()},
        )
        try:
            write_json_atomic(manifest, out_dir / "manifest.json")
        except DiskFull:  # the manifest stays `running`; readers show the run as crashed
            if disk_full is None:
                raise
        if disk_full is not None:
            raise disk_full
    return RunOutcome(out_dir=out_dir, kpis=kpis, wall_s=wall_s, timings_s=timings)


def _delete_checkpoints(out_dir: Path) -> None:
    """A complete run needs no resume checkpoint (the final chain state stays)."""
    from twin.resume import CHAIN_CHECKPOINT, CHECKPOINT

    for name in (CHECKPOINT, *CHAIN_CHECKPOINT):
        (out_dir / name).unlink(missing_ok=True)


def _run_world(mosaik: Any, scenario: Scenario, *, model: Any, net: Any, ledger: Any,
               recorder: RunRecorder, log: MarketLog, n_intervals: int, duration_s: int,
               progress: bool, timings: dict[str, float], rt_factor: float | None = None,
               extend_world: Callable[..., None] | None = None,
               grid_step_s: int | None = None, services: Any = None, signers: Any = None,
               checkpoints: _Checkpoints | None = None, faults: Any = None,
               settle_at_end: bool = False) -> None:
    interval_s = scenario.market.interval_s
    sim_config = {
        "Agents": {"python": "twin.cosim.agents_sim:AgentsSim"},
        "Market": {"python": "twin.cosim.market_sim:MarketSim"},
        "Grid": {"python": "twin.cosim.grid_sim:GridSim"},
        "Faults": {"python": "twin.cosim.faults_sim:FaultsSim"},
        "Meters": {"python": "twin.cosim.meters_sim:MetersSim"},
    }
    data_faults = scenario.faults.data if scenario.faults is not None else None
    checkpoint = _Checkpointer(recorder, checkpoints or _Checkpoints())
    desk = _meter_desk(data_faults)
    data_state = None
    if desk is not None:  # checkpointed and checked on resume (twin/faults/data_state.py)
        from twin.faults.data_state import DataFaultsState

        data_state = DataFaultsState(desk)
        for holder in (ledger, checkpoints.chain if checkpoints is not None else None):
            bind = getattr(holder, "bind_data_state", None)
            if bind is not None:
                bind(data_state)
    with mosaik.World(sim_config, debug=False, skip_greetings=True, configure_logging=False) as world:
        agents = world.start("Agents", model=model, recorder=checkpoint, interval_s=interval_s,
                             timings=timings, outages=faults.overlay if faults else None,
                             end_s=duration_s if settle_at_end else None).Feeder()
        market = world.start("Market", ledger=ledger, recorder=recorder, interval_s=interval_s,
                             n_intervals=n_intervals, log=log, timings=timings,
                             services=services, signers=signers,
                             desk=desk, settle_at_end=settle_at_end).Market()
        grid = world.start("Grid", net=net, recorder=recorder, interval_s=interval_s,
                           step_s=grid_step_s, timings=timings,
                           end_s=duration_s if settle_at_end else None,
                           der_devices=feeder_der_devices(scenario, model.feeder),
                           frequency_hz=model.tso.system_frequency_hz,
                           oltc=scenario.grid.oltc, element_phase=model.feeder.element_phase,
                           faulted=faults.grid_snapshot if faults else None,
                           phase_network=model.feeder.phase_network,
                           phase_regulators=model.feeder.phase_regulators,
                           start_s_of_day=int(model.dso.start_s_of_day)).Grid()
        if extend_world is None:
            world.connect(agents, grid, "element_power")
        else:  # e.g. twin hil serve: the HIL devices sit between the agents and the grid
            extend_world(world, agents=agents, grid=grid, model=model, recorder=recorder,
                         timings=timings)
        if data_faults is None:
            world.connect(agents, market, "orders", "curtailments", "metered_wh", "dr_calls")
        else:  # meter data faults: the readings reach the market through the head-end
            meters = world.start("Meters", spec=data_faults, seed=scenario.seed,
                                 n_intervals=n_intervals, state=data_state,
                                 recorder=recorder, interval_s=interval_s, timings=timings).Meters()
            world.connect(agents, meters, "metered_wh")
            world.connect(meters, market, "metered_wh")
            world.connect(agents, market, "orders", "curtailments", "dr_calls")
        # the taps the grid's next solve uses reach the DSO's check (twin/agents/dso.py)
        world.connect(grid, agents, "taps", time_shifted=True,
                      initial_data={"taps": {"trafo_tap_pos": {}, "regulator_taps": []}})
        world.connect(market, agents, "trades", time_shifted=True,
                      initial_data={"trades": {"interval": 0, "trades": [], "price_history": []}})
        if faults is not None:  # the fault processes reach grid, agents and market via mosaik
            fsim = world.start("Faults", plan=faults.plan, books=faults.overlay.device_books,
                               recorder=recorder, interval_s=interval_s, timings=timings).Faults()
            world.connect(fsim, agents, "fault_state")
            world.connect(fsim, grid, "fault_state")
            world.connect(fsim, market, "books")
        # settle_at_end: the last interval settles at duration_s (agents and market only)
        with interrupts_not_swallowed():  # mosaik catches a Ctrl-C in its scheduler
            world.run(until=duration_s + (1 if settle_at_end else 0), print_progress=progress,
                      rt_factor=rt_factor)


def _carry_fault_rows(out_dir: Path, recorder: RunRecorder) -> None:
    """A resumed run keeps the stopped run's ``chain_incidents`` and ``tx_latency`` rows: its
    replayed steps send nothing, so they have none of their own."""
    from twin.results import read_parquet

    for table in ("chain_incidents", "tx_latency"):
        path = out_dir / f"{table}.parquet"
        if path.is_file():
            with contextlib.suppress(ValueError, OSError):  # a damaged table: rebuilt empty
                recorder.add(table, read_parquet(path).to_pylist())


def _drain_fault_log(ledger: Any, recorder: RunRecorder, *, k: int, interval_s: int) -> None:
    """The chain incidents still open when the world stops (faults.chain)."""
    drain = getattr(ledger, "drain_fault_log", None)
    if drain is not None:
        for table, rows in drain(time_s=k * interval_s, interval=k, final=True).items():
            recorder.add(table, rows)


def _signers(scenario: Scenario, model: Any) -> DeviceSigners:
    """The devices' keys: per-interval signing, or daily (day schedules planned from the
    households' forecasts, twin.market.daily_signers)."""
    ids = [d.device_id for d in model.devices]
    if scenario.market.signing != "daily":
        return DeviceSigners(seed=scenario.seed, device_ids=ids)
    from twin.market.daily_signers import DailySigners

    return DailySigners(seed=scenario.seed, device_ids=ids,
                        per_day=86_400 // scenario.market.interval_s,
                        planner=model.day_ahead_orders)


def _meter_desk(data_faults: Any) -> Any:
    """The operator's meter desk (provisional settlement, true-ups) under faults.data."""
    if data_faults is None:
        return None
    from twin.market.provisional import MeterDesk

    return MeterDesk(estimate=data_faults.estimate)


@dataclass
class _Checkpoints:
    """When to flush the tables (and checkpoint the chain) while a run goes on."""

    every_s: float = CHECKPOINT_WALL_S
    every_intervals: int = CHECKPOINT_INTERVALS
    held: Callable[[], bool] = lambda: False  # a resumed run still replaying: no flush
    chain: Callable[..., None] | None = None  # the chain checkpoint (twin/resume.py)


class _Checkpointer:
    """Recorder proxy for the agents adapter: flushes all tables every ``every_s`` seconds
    of wall time or every ``every_intervals`` market intervals (an agents step is one)."""

    def __init__(self, recorder: RunRecorder, plan: _Checkpoints) -> None:
        self._recorder = recorder
        self._plan = plan
        self._last = time.monotonic()
        self._steps = 0

    def add(self, table: str, rows: Any) -> None:
        self._recorder.add(table, rows)
        self._after(table)

    def add_columns(self, table: str, columns: Any, **kw: Any) -> None:
        self._recorder.add_columns(table, columns, **kw)
        self._after(table)

    def _after(self, table: str) -> None:
        if table != "agents":  # the first table of an agents step: one decision per step
            return
        self._steps += 1
        by_steps = self._steps >= self._plan.every_intervals
        if not by_steps and time.monotonic() - self._last <= self._plan.every_s:
            return
        if self._plan.held():
            return
        # off this thread unless a chain checkpoint must follow the tables on disk
        self._recorder.flush(wait=self._plan.chain is not None and getattr(
            self._plan.chain, "needs_flushed_tables", True))
        if self._plan.chain is not None:
            self._plan.chain(force=by_steps)
        self._last = time.monotonic()
        self._steps = 0


def _chain_checkpoint(ledger: Any, chain_info: dict[str, Any], out_dir: Path,
                      scenario: Scenario, *, run_id: str, n_accounts: int = 0,
                      services: Any = None) -> Callable[..., None] | None:
    """After each flush: dump the chain state (a chain run) or record the reference ledger's
    fingerprint (twin/resume_reference.py) for ``twin run --resume``."""
    fresh = chain_info["ledger"] == "chain" and bool(services) and not chain_info.get("rpc_url")
    if chain_info["ledger"] == "reference" or fresh:  # fresh: replayed on a new chain
        from twin.resume_reference import ReferenceCheckpointer

        return ReferenceCheckpointer(ledger=ledger, out_dir=out_dir,
                                     interval_s=scenario.market.interval_s, run_id=run_id,
                                     scenario_hash=scenario.digest(), n_accounts=n_accounts,
                                     services=services, kind=chain_info["ledger"])
    if chain_info["ledger"] != "chain" or chain_info.get("rpc_url"):
        return None
    from twin.resume import ChainCheckpointer

    return ChainCheckpointer(ledger=ledger, out_dir=out_dir, interval_s=scenario.market.interval_s,
                             run_id=run_id, scenario_hash=scenario.digest())


def resume_run(out_dir: Path, *, progress: bool = True, on_status: Any = None,
               **checkpoint_kw: Any) -> Any:
    """Continue the stopped run in ``out_dir`` to its planned end (``twin run --resume``; the
    chain replay lives in :mod:`twin.resume`)."""
    from twin.resume import ResumeError, load_resume_point
    from twin.scenario import scenario_from_dict

    data, point = load_resume_point(out_dir)
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    scenario = scenario_from_dict(data)
    services = enabled_services(scenario)
    if services and scenario.market.ledger == "chain" and getattr(point, "kind", "") != "chain_fresh":
        raise ResumeError(f"{out_dir}: a chain run with market services ({', '.join(services)}) "
                          "needs a fresh-replay checkpoint (written by this version); run it again")
    return run_scenario(
        scenario, out_dir=Path(out_dir), scenario_path=manifest.get("scenario_file"),
        until_s=int(manifest["duration_s"]), progress=progress, on_status=on_status,
        resume=point, **checkpoint_kw,
    )  # fmt: skip
