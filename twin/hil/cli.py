"""``twin hil serve`` and ``twin hil controller`` (wired into :mod:`twin.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parsers"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_parsers(sub: Any) -> None:
    """Add the ``hil`` command with its ``serve`` and ``controller`` sub-commands."""
    h = sub.add_parser("hil", help="hardware in the loop: SunSpec Modbus TCP devices")
    hs = h.add_subparsers(dest="hil_command", required=True)

    s = hs.add_parser("serve", help="run a scenario in real time with its HIL devices on Modbus TCP")
    s.add_argument("scenario", type=Path)
    s.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    s.add_argument("--port", type=int, default=5020, help="TCP port (0: any free port)")
    s.add_argument("--rt-factor", type=float, default=1.0,
                   help="wall seconds per simulated second (default 1.0; 0: as fast as possible)")
    s.add_argument("--rt-strict", action="store_true", help="stop the run on the first deadline miss")
    s.add_argument("--until", type=int, default=None, metavar="SECONDS", help="stop after this much simulated time")
    s.add_argument("--out", type=Path, default=Path("results/hil"), help="results folder (default results/hil)")
    s.add_argument("--wait-client", type=float, default=0.0, metavar="SECONDS",
                   help="hold the clock until a first Modbus client connects (at most SECONDS)")
    s.add_argument("--server", choices=["thread", "process"], default="thread",
                   help="the Modbus server in a thread of the twin's process (default) or in its own")
    s.set_defaults(hil_handler=_cmd_serve)

    c = hs.add_parser("controller", help="example external controller speaking only Modbus TCP")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=5020)
    c.add_argument("--unit", type=int, required=True, help="unit id of the controlled device")
    c.add_argument("--mode", choices=["volt-watt", "volt-var", "peak-shave"], default="volt-watt")
    c.add_argument("--vv-v", default="92,98,102,108",
                   help="volt-var: curve voltages, %% of VNom (comma separated)")
    c.add_argument("--vv-q", default="44,0,0,-44",
                   help="volt-var: reactive power at those voltages, %% of VarMax (> 0 injecting)")
    c.add_argument("--v-start", type=float, default=1.03, help="volt-watt: p.u. where curtailment starts")
    c.add_argument("--v-stop", type=float, default=1.06, help="volt-watt: p.u. where output reaches 0")
    c.add_argument("--meter-unit", type=int, default=None, help="peak-shave: unit id of the meter")
    c.add_argument("--import-limit-kw", type=float, default=20.0, help="peak-shave: import above this is shaved")
    c.add_argument("--period", type=float, default=0.2, help="seconds between control cycles")
    c.add_argument("--revert-s", type=int, default=30,
                   help="reversion timer written with each set-point (watchdog; 0: none)")
    c.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    c.set_defaults(hil_handler=_cmd_controller)


def _fail(msg: str, code: int) -> int:
    print(f"twin: error: {msg}", file=sys.stderr)
    return code


def _cmd_serve(args: argparse.Namespace) -> int:
    from twin.errors import TwinError
    from twin.hil.serve import serve
    from twin.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    if not scenario.hil.devices:
        return _fail(f"{args.scenario}: hil.devices is empty; nothing to serve", EXIT_BAD_INPUT)
    if args.rt_factor < 0:
        return _fail("--rt-factor must be >= 0", EXIT_BAD_INPUT)
    try:
        from loguru import logger

        logger.disable("mosaik")
    except ImportError:  # pragma: no cover
        pass
    import signal

    def _term(signum: int, frame: Any) -> None:  # SIGTERM ends the run like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        out = serve(scenario, out_dir=args.out, host=args.host, port=args.port,
                    rt_factor=args.rt_factor or None, rt_strict=args.rt_strict, until_s=args.until,
                    scenario_path=str(args.scenario), wait_client_s=args.wait_client,
                    server_process=args.server == "process",
                    on_status=lambda m: print(f"[twin] {m}", file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print(f"\ntwin: interrupted; results so far are in {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except (TwinError, RuntimeError, ValueError) as exc:
        return _fail(f"{type(exc).__name__}: {exc}\n(results written so far are in {args.out})", EXIT_FAILED)
    finally:
        signal.signal(signal.SIGTERM, previous)
    k = out.run.kpis
    print(f"\n== gridtwin hil serve ==\nvoltage              {k['vm_min_pu']:.4f} .. {k['vm_max_pu']:.4f} p.u.\n"
          f"steps                {out.step_timing.summary()}\n"
          f"mosaik behind        {int(out.rt_behind['count'])}x, worst {out.rt_behind['max_s'] * 1e3:.0f} ms\n"
          f"modbus               {out.server_stats}\nresults              {out.run.out_dir}")
    return EXIT_OK


def _cmd_controller(args: argparse.Namespace) -> int:
    from twin.hil.controller import run_controller

    try:
        return run_controller(host=args.host, port=args.port, unit=args.unit, mode=args.mode,
                              v_start_pu=args.v_start, v_stop_pu=args.v_stop,
                              meter_unit=args.meter_unit, import_limit_w=args.import_limit_kw * 1e3,
                              period_s=args.period, revert_s=args.revert_s, duration_s=args.duration,
                              vv_v_pct=tuple(float(x) for x in args.vv_v.split(",")),
                              vv_q_pct=tuple(float(x) for x in args.vv_q.split(",")))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
