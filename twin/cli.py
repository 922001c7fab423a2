"""The ``twin`` command.

Exit codes: 0 success, 1 the run failed (message says why), 2 bad input (every scenario
error listed), 75 a chain outage outlasted ``faults.chain.deadline_s`` (the run stopped
cleanly: ``twin run --resume DIR`` continues it), 130 interrupted by Ctrl-C, 143 by SIGTERM,
129 by SIGHUP (tables written so far stay readable; twin/lifecycle.py). No traceback reaches the user without ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CHAIN_OUTAGE = 75  # EX_TEMPFAIL: stopped by a chain outage, resumable


def _parser() -> argparse.ArgumentParser:
    from twin import __version__

    p = argparse.ArgumentParser(prog="twin", description="gridtwin: feeder digital twin with a local energy market on chain")
    p.add_argument("--version", action="version", version=f"gridtwin {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show Python tracebacks of unexpected errors (also after the command)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one scenario end to end and write its results folder")
    r.add_argument("scenario", type=Path, nargs="?", help="scenario YAML file (not with --resume)")
    r.add_argument("--out", type=Path, help="results folder to write")
    r.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the stopped chain run in DIR from its last checkpoint")
    r.add_argument("--rpc-url", default=None, help="use this Ethereum JSON-RPC node instead of starting Anvil")
    r.add_argument("--funder-key", default=None,
                   help="hex private key that pays the run's accounts their gas money on --rpc-url "
                        "(default: $TWIN_FUNDER_KEY)")
    r.add_argument("--until", type=int, default=None, metavar="SECONDS",
                   help="stop after this much simulated time (default: the scenario's duration)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--force", action="store_true",
                   help="--out may hold another run: clear it first")
    r.add_argument("--checkpoint-every-s", type=float, default=None, metavar="SECONDS",
                   help="flush tables and checkpoint the chain at least this often in wall time "
                   "(default 10)")
    r.add_argument("--checkpoint-every-intervals", type=int, default=None, metavar="N",
                   help="... and at least every N market intervals (default 8)")

    v = sub.add_parser("validate", help="check a scenario file and list every error")
    v.add_argument("scenario", type=Path)

    d = sub.add_parser("dashboard", help="open the Streamlit dashboards on a run, sweep or comparison folder")
    d.add_argument("dir", type=Path, help="a run folder (manifest.json), a sweep folder (kpis.parquet, "
                   "runs/) or a comparison folder (compare.parquet)")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1")

    from twin.hil.cli import add_parsers as add_hil_parsers

    add_hil_parsers(sub)  # twin hil serve | controller

    from twin.regress import add_parser as add_regress_parser
    from twin.sweep.cli import add_parser as add_sweep_parser

    add_sweep_parser(sub)  # twin sweep (sets args.handler)
    add_regress_parser(sub)  # twin regress (sets args.handler)

    from twin.compare import add_parser as add_compare_parser

    add_compare_parser(sub)  # twin compare (sets args.handler)

    from twin.studies.resilience_cli import add_parser as add_resilience_parser

    add_resilience_parser(sub)  # twin resilience (sets args.handler)
    from twin.studies.hosting_cli import add_parser as add_hosting_parser
    add_hosting_parser(sub)  # twin hosting (sets args.handler)
    return p


def _fail(msg: str, code: int) -> int:
    print(f"twin: error: {msg}", file=sys.stderr)
    return code


def _load(path: Path) -> Any:
    from twin.scenario import load_scenario

    return load_scenario(path)


def _cmd_validate(args: argparse.Namespace) -> int:
    from twin.scenario import ScenarioError

    try:
        s = _load(args.scenario)
        if s.faults is not None:  # fault targets against the built feeder (twin/faults)
            import numpy as np

            from twin.faults.plan import net_problems
            from twin.grid.feeders import build_feeder

            feeder = build_feeder(scenario=s, rng=np.random.default_rng(s.seed))
            if problems := net_problems(s.faults, feeder.net):
                raise ScenarioError(str(args.scenario), problems)
    except ScenarioError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    print(f"{args.scenario}: ok ({s.name}, {s.n_intervals} intervals of {s.market.interval_s} s)")
    return EXIT_OK


def _check_until(args: argparse.Namespace, scenario: Any) -> str | None:
    """``--until``: positive, a whole number of market intervals (the error, or None)."""
    if args.until is None:
        return None
    step = scenario.market.interval_s
    if args.until <= 0:
        return f"--until {args.until}: must be a positive number of seconds (a multiple of the market interval, {step} s)"
    if args.until % step:
        return (f"--until {args.until}: must be a multiple of the market interval ({step} s), "
                f"e.g. {max(step, args.until - args.until % step)}")
    return None


def _check_checkpoint_args(args: argparse.Namespace) -> str | None:
    if args.checkpoint_every_s is not None and args.checkpoint_every_s < 0:
        return f"--checkpoint-every-s {args.checkpoint_every_s}: must be >= 0"
    if args.checkpoint_every_intervals is not None and args.checkpoint_every_intervals < 1:
        return f"--checkpoint-every-intervals {args.checkpoint_every_intervals}: must be >= 1"
    return None


def _checkpoint_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.checkpoint_every_s is not None:
        kw["checkpoint_every_s"] = args.checkpoint_every_s
    if args.checkpoint_every_intervals is not None:
        kw["checkpoint_every_intervals"] = args.checkpoint_every_intervals
    return kw


def _cmd_run(args: argparse.Namespace) -> int:
    from twin.errors import TwinError
    from twin.lifecycle import interrupt_exit_code, interrupt_reason
    from twin.outdir import OutDirError, prepare_out_dir
    from twin.rpc_check import NodeRequirementError
    from twin.run import run_scenario
    from twin.scenario import ScenarioError

    if args.resume is not None:
        return _cmd_resume(args)
    if args.scenario is None or args.out is None:
        return _fail("twin run needs a SCENARIO file and --out DIR (or --resume DIR)",
                     EXIT_BAD_INPUT)
    try:
        scenario = _load(args.scenario)
    except ScenarioError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    problem = _check_until(args, scenario) or _check_checkpoint_args(args)
    if problem:
        return _fail(problem, EXIT_BAD_INPUT)
    try:
        prepare_out_dir(args.out, scenario_hash=scenario.digest(), force=args.force,
                        scenario_file=str(args.scenario))
    except OutDirError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        outcome = run_scenario(
            scenario, out_dir=args.out, scenario_path=str(args.scenario), rpc_url=args.rpc_url,
            funder_key=args.funder_key, until_s=args.until, progress=progress,
            on_status=lambda m: print(f"[twin] {m}", file=sys.stderr), **_checkpoint_kw(args),
        )
    except KeyboardInterrupt as exc:
        print(f"\ntwin: {interrupt_reason(exc)}; tables written so far are in {args.out} "
              "(manifest.json says where the run stopped)", file=sys.stderr)
        return interrupt_exit_code(exc)
    except (NodeRequirementError, ScenarioError) as exc:  # e.g. fault targets the feeder lacks
        return _fail(str(exc), EXIT_BAD_INPUT)
    except TwinError as exc:
        if getattr(exc, "resumable", False):
            return _fail(f"{exc}\n(results written so far are in {args.out}; continue with "
                         f"`twin run --resume {args.out}`)", EXIT_CHAIN_OUTAGE)
        return _fail(f"{exc}\n(results written so far are in {args.out})", EXIT_FAILED)
    _print_summary(outcome)
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    """``twin run --resume DIR`` (twin/resume.py)."""
    from twin.errors import TwinError
    from twin.lifecycle import interrupt_exit_code, interrupt_reason
    from twin.resume import ResumeError, load_resume_point
    from twin.run import resume_run

    if args.scenario is not None or args.out not in (None, args.resume):
        return _fail("--resume DIR continues DIR's own scenario into DIR: give no SCENARIO "
                     "or other --out", EXIT_BAD_INPUT)
    problem = _check_checkpoint_args(args)
    if problem:
        return _fail(problem, EXIT_BAD_INPUT)
    try:  # a folder that cannot be resumed is a bad input, and nothing in it is touched
        load_resume_point(args.resume)
    except ResumeError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        outcome = resume_run(args.resume, progress=progress,
                             on_status=lambda m: print(f"[twin] {m}", file=sys.stderr),
                             **_checkpoint_kw(args))
    except KeyboardInterrupt as exc:
        print(f"\ntwin: {interrupt_reason(exc)}; tables written so far are in {args.resume}",
              file=sys.stderr)
        return interrupt_exit_code(exc)
    except TwinError as exc:
        if getattr(exc, "resumable", False):
            return _fail(f"{exc}\n(results written so far are in {args.resume}; continue with "
                         f"`twin run --resume {args.resume}`)", EXIT_CHAIN_OUTAGE)
        return _fail(f"{exc}\n(results written so far are in {args.resume})", EXIT_FAILED)
    _print_summary(outcome)
    return EXIT_OK


def _print_summary(outcome: Any) -> None:
    k = outcome.kpis
    tokens = "conserved" if k.get("tokens_conserved") == 1.0 else "NOT CONSERVED"
    if "game_grand_value" in k:  # a cooperative-game scenario
        units = [n.removeprefix("game_p_mw_") for n in k if n.startswith("game_p_mw_")]
        checks = [f"{v:<8} superadditive {'yes' if k[f'game_superadditive_{v}'] else 'no':>3}  core "
                  f"{'non-empty' if k[f'game_core_nonempty_{v}'] else 'empty':>9}  Shapley in core "
                  f"{'yes' if k[f'game_shapley_in_core_{v}'] else 'no'}"
                  for v in ("profit", "paper") if f"game_superadditive_{v}" in k]
        print("\n".join(["", "== gridtwin game summary ==",
                         f"marginal price       {k['game_price_per_mwh']:10.2f} per MWh",
                         f"grand coalition      {k['game_grand_value']:10.2f} value",
                         *(f"{u:<8} dispatch {k['game_p_mw_' + u]:8.2f} MW  profit "
                           f"{k['game_profit_' + u]:9.2f}  Shapley {k['game_shapley_' + u]:9.2f}"
                           for u in units),
                         *checks,
                         f"tokens               {tokens:>10}", f"results              {outcome.out_dir}"]))
        return
    lines = [
        f"energy traded        {k['energy_traded_kwh']:10.1f} kWh in {int(k['trades'])} trades",
        f"mean clearing price  {k['mean_price_per_mwh']:10.2f} per MWh",
        f"voltage              {k['vm_min_pu']:10.4f} .. {k['vm_max_pu']:.4f} p.u.",
        f"max line loading     {k['max_line_loading_percent']:10.1f} %",
        f"curtailed by DSO     {k['curtailed_kwh']:10.1f} kWh",
        f"tokens               {tokens:>10} (total supply {k.get('total_supply', 0):,.0f} micro-units)",
        f"wall time            {outcome.wall_s:10.1f} s",
        f"results              {outcome.out_dir}",
    ]
    print("\n".join(["", "== gridtwin run summary ==", *lines]))


def _cmd_dashboard(args: argparse.Namespace) -> int:
    run_dir = args.dir.resolve()
    is_compare = (run_dir / "compare.parquet").is_file()
    is_sweep = (run_dir / "kpis.parquet").is_file() or (run_dir / "runs").is_dir()
    is_run = (run_dir / "manifest.json").is_file() or (run_dir / "cases.parquet").is_file()
    if not is_compare and not is_sweep and not is_run:
        return _fail(f"{run_dir}: neither a run folder (manifest.json; cases.parquet of a "
                     "resilience study), a sweep folder (kpis.parquet, runs/) nor a comparison "
                     "folder (compare.parquet); give the --out folder of `twin run`, "
                     "`twin resilience`, `twin sweep` or `twin compare`",
                     EXIT_BAD_INPUT)
    from twin.lifecycle import Terminated, die_with_parent
    from twin.tools import ToolMissing, dashboard_app

    try:
        app = dashboard_app()
    except ToolMissing as exc:
        return _fail(str(exc), EXIT_FAILED)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
           "--server.address", args.host, "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "viewer",
           "--", "--dir", str(run_dir)]
    print(f"twin: dashboard on http://{args.host}:{args.port}  (Ctrl-C to stop)", file=sys.stderr)
    # Streamlit dies with us, even on kill -9 (twin/lifecycle.py); SIGTERM/SIGHUP stop it.
    proc = subprocess.Popen(cmd, env=os.environ.copy(), preexec_fn=die_with_parent)
    try:
        return proc.wait()
    except KeyboardInterrupt as exc:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_OK


def _quiet_asyncio() -> None:
    """No "Task was destroyed but it is pending!" blocks after a failed run (the command's
    choice, not the library's: mosaik's pending tasks are abandoned with the failed world)."""
    import logging

    class _NoPendingTaskNoise(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith("Task was destroyed but it is pending")

    logging.getLogger("asyncio").addFilter(_NoPendingTaskNoise())


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "hil":
        return int(args.hil_handler(args))
    if args.command in {"sweep", "regress", "resilience", "compare", "hosting"}:
        return int(args.handler(args))
    handlers = {"run": _cmd_run, "validate": _cmd_validate, "dashboard": _cmd_dashboard}
    return handlers[args.command](args)


def main(argv: list[str] | None = None) -> int:
    from twin.errors import TwinError
    from twin.lifecycle import (
        handle_termination,
        interrupt_exit_code,
        interrupt_reason,
        received_signal,
    )
    from twin.runtime import configure

    # numba's OpenMP layer leaves worker threads spinning after each parallel batch solve,
    # starving the main thread on small machines; the command (not the library) picks the
    # work-queue layer unless the user chose one (NUMBA_THREADING_LAYER), and tunes malloc.
    configure()
    argv_given = argv  # None: this process is the `twin` program (see _leave_without_teardown)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    args = _parser().parse_args([a for a in argv if a != "--debug"])
    _quiet_asyncio()
    try:
        with handle_termination():
            code = _dispatch(args)
    except KeyboardInterrupt as exc:  # a command without its own Ctrl-C message
        print(f"\ntwin: {interrupt_reason(exc)}", file=sys.stderr)
        return interrupt_exit_code(exc)
    except TwinError as exc:
        if debug:
            raise
        return _fail(str(exc), EXIT_FAILED)
    except Exception as exc:
        if debug:
            raise
        return _fail(f"{_internal_error(exc)} (add --debug for the traceback)", EXIT_FAILED)
    sig = received_signal()
    if code == EXIT_INTERRUPTED and sig is not None:  # SIGTERM/SIGHUP: 143/129, not 130
        code = 128 + sig
    if argv_given is None and args.command == "run" and not debug:
        _leave_without_teardown(code)
    return code


def _leave_without_teardown(code: int) -> None:
    """End ``twin run`` as the program without tearing the interpreter down.

    By now every results file is written and closed (renamed into place) and Anvil is
    stopped; what the interpreter's exit would add is freeing the run's millions of objects
    one by one and a last garbage collection (seconds for a town). So: the exit handlers run
    (signature workers closed, logging flushed), stdout and stderr are flushed and the
    process ends with ``os._exit``; the kernel releases the memory at once. Data written to
    files is in the kernel already and outlives the process. Skipped (the normal exit) when
    another non-daemon thread is still running or ``TWIN_FAST_EXIT=0``."""
    import atexit
    import threading

    if os.environ.get("TWIN_FAST_EXIT", "1") == "0" or any(
            t is not threading.main_thread() and not t.daemon and t.is_alive()
            for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


def _internal_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
