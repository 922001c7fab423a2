"""One scenario run end to end: feeder, agents, ledger, mosaik world, results folder.

:func:`run_scenario` is what ``twin run`` calls. mosaik is the only time loop: the three
adapters in :mod:`twin.cosim` step the agents, the market (ledger) and the grid once per
market interval. Whatever happens (normal end, error, Ctrl-C) the tables written so far
are flushed atomically, the manifest says where the run stopped, and Anvil is stopped.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin import __version__
from twin.cosim.market_sim import MarketLog
from twin.kpis import compute_kpis
from twin.market.audit import drain_tx_log, token_audit
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT
from twin.market.units import MICRO, price_from_per_mwh
from twin.results import RunRecorder, write_json_atomic
from twin.scenario import Scenario

__all__ = ["RunOutcome", "run_scenario"]

#: Tables are rewritten at most this often (seconds of wall time) while a run goes on.
CHECKPOINT_WALL_S = 10.0


@dataclass
class RunOutcome:
    out_dir: Path
    kpis: dict[str, float]
    wall_s: float
    timings_s: dict[str, float] = field(default_factory=dict)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def _open_ledger(scenario: Scenario, out_dir: Path, n_accounts: int,
                 rpc_url: str | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yield ``(ledger, chain_manifest)``; a chain ledger's Anvil is stopped on exit."""
    m = scenario.market
    interval_s = m.interval_s
    retail = price_from_per_mwh(m.retail_price_per_mwh)
    feed_in = price_from_per_mwh(m.feed_in_price_per_mwh)
    if m.ledger == "reference":
        from twin.market.reference import ReferenceLedger

        yield ReferenceLedger(interval_s=interval_s, retail_price_per_mwh=retail,
                              feed_in_price_per_mwh=feed_in), {"ledger": "reference"}
        return

    from twin.chain.anvil import AnvilNode
    from twin.chain.ledger import ChainLedger

    url = rpc_url or scenario.chain.rpc_url
    state_file = None if url else out_dir / "chain_state.json"
    # With an external URL the node only attaches; otherwise it starts (and always stops) Anvil.
    with AnvilNode(rpc_url=url, accounts=n_accounts, dump_state=state_file) as node:
        ledger = ChainLedger.deploy(node.web3(), interval_s=interval_s, retail_price_per_mwh=retail,
                                    feed_in_price_per_mwh=feed_in)
        yield ledger, _chain_manifest(ledger, rpc_url=url,
                                      state_file=state_file.name if state_file else None)


def _chain_manifest(ledger: Any, *, rpc_url: str | None, state_file: str | None) -> dict[str, Any]:
    return {
        "ledger": "chain",
        "chain_id": ledger.chain_id,
        "contracts": ledger.addresses(),
        "rpc_url": rpc_url,
        "state_file": state_file,
    }


def run_scenario(
    scenario: Scenario,
    *,
    out_dir: Path,
    scenario_path: str | None = None,
    rpc_url: str | None = None,
    until_s: int | None = None,
    progress: bool = True,
    on_status: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``scenario`` and write its results folder to ``out_dir``."""
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
        "seed": scenario.seed,
        "package_version": __version__,
        "git_sha": _git_sha(),
        "start_time": scenario.start.astimezone(UTC).isoformat(),
        "started_at": datetime.now(UTC).isoformat(),
        "duration_s": duration_s,
        "interval_s": scenario.market.interval_s,
        "status": "running",
        "stopped_at_time_s": 0,
        "tables": [],
    }
    write_json_atomic(manifest, out_dir / "manifest.json")
    recorder = RunRecorder(out_dir)
    log = MarketLog()
    timings: dict[str, float] = {}

    say("building feeder and agents")
    rng = np.random.default_rng(scenario.seed)
    feeder = build_feeder(scenario=scenario, rng=rng)
    model = FeederModel(scenario=scenario, feeder=feeder, rng=rng)
    timings["setup_grid_agents_s"] = time.perf_counter() - t0
    n_accounts = max([OPERATOR_ACCOUNT, DSO_ACCOUNT, *model.accounts]) + 1
    status = "failed"
    error: str | None = None
    try:
        say(f"starting the {scenario.market.ledger} ledger")
        with _open_ledger(scenario, out_dir, n_accounts, rpc_url) as (ledger, chain_info):
            manifest["chain"] = chain_info
            t_chain = time.perf_counter()
            minted = _fund_and_register(ledger, scenario, model)
            timings["setup_ledger_s"] = time.perf_counter() - t_chain
            if chain_info["ledger"] == "chain":
                _write_abis(ledger, out_dir)
            write_json_atomic(manifest, out_dir / "manifest.json")
            recorder.add("chain", drain_tx_log(ledger, interval_s=scenario.market.interval_s))
            say(f"running {n_intervals} intervals under mosaik")
            try:
                _run_world(mosaik, scenario, model=model, net=feeder.net, ledger=ledger,
                           recorder=recorder, log=log, n_intervals=n_intervals,
                           duration_s=duration_s, progress=progress, timings=timings)
                status = "complete"
            finally:
                # Conservation is checked on the ledger's own books, even after an error.
                manifest["tokens"] = token_audit(ledger, accounts=range(n_accounts),
                                                 minted=minted)
    except KeyboardInterrupt:
        status = "interrupted"
        error = "interrupted by the user (Ctrl-C)"
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        recorder.flush()
        wall_s = time.perf_counter() - t0
        kpis = compute_kpis(recorder=recorder, log=log, tokens=manifest.get("tokens"),
                            interval_s=scenario.market.interval_s)
        kpis["wall_time_s"] = round(wall_s, 3)
        write_json_atomic(kpis, out_dir / "kpis.json")
        manifest.update(
            status=status,
            error=error,
            stopped_at_time_s=(log.last_settled + 1) * scenario.market.interval_s
            if status != "complete" else duration_s,
            finished_at=datetime.now(UTC).isoformat(),
            tables=sorted(p.stem for p in out_dir.glob("*.parquet")),
            timings_s={k: round(v, 3) for k, v in timings.items()},
        )
        write_json_atomic(manifest, out_dir / "manifest.json")
    return RunOutcome(out_dir=out_dir, kpis=kpis, wall_s=wall_s, timings_s=timings)


def _fund_and_register(ledger: Any, scenario: Scenario, model: Any) -> int:
    """Fund the DSO and every participant, register every device; return the amount minted."""
    m = scenario.market
    funding = {DSO_ACCOUNT: round(m.dso_balance * MICRO)}
    funding |= {a: round(m.initial_balance * MICRO) for a in model.accounts}
    for account, amount in funding.items():
        ledger.deposit(account, amount)
    for device in model.devices:
        ledger.register_device(device)
    return sum(funding.values())




def _write_abis(ledger: Any, out_dir: Path) -> None:
    for name, abi in ledger.abis().items():
        write_json_atomic(abi, out_dir / "abi" / f"{name}.json")


def _run_world(mosaik: Any, scenario: Scenario, *, model: Any, net: Any, ledger: Any,
               recorder: RunRecorder, log: MarketLog, n_intervals: int, duration_s: int,
               progress: bool, timings: dict[str, float]) -> None:
    interval_s = scenario.market.interval_s
    sim_config = {
        "Agents": {"python": "twin.cosim.agents_sim:AgentsSim"},
        "Market": {"python": "twin.cosim.market_sim:MarketSim"},
        "Grid": {"python": "twin.cosim.grid_sim:GridSim"},
    }
    checkpoint = _Checkpointer(recorder)
    with mosaik.World(sim_config, debug=False, skip_greetings=True, configure_logging=False) as world:
        agents = world.start("Agents", model=model, recorder=checkpoint, interval_s=interval_s,
                             timings=timings).Feeder()
        market = world.start("Market", ledger=ledger, recorder=recorder, interval_s=interval_s,
                             n_intervals=n_intervals, log=log, timings=timings).Market()
        grid = world.start("Grid", net=net, recorder=recorder, interval_s=interval_s,
                           timings=timings).Grid()
        world.connect(agents, grid, "element_power")
        world.connect(agents, market, "orders", "curtailments", "metered_wh")
        world.connect(market, agents, "trades", time_shifted=True,
                      initial_data={"trades": {"interval": 0, "trades": [], "price_history": []}})
        world.run(until=duration_s, print_progress=progress)


class _Checkpointer:
    """Recorder proxy for the agents adapter that flushes all tables every few seconds."""

    def __init__(self, recorder: RunRecorder) -> None:
        self._recorder = recorder
        self._last = time.monotonic()

    def add(self, table: str, rows: Any) -> None:
        self._recorder.add(table, rows)
        if time.monotonic() - self._last > CHECKPOINT_WALL_S:
            self._recorder.flush()
            self._last = time.monotonic()
