"""Example external controller: speaks only Modbus TCP + SunSpec (no twin internals).

This module deliberately imports nothing from :mod:`twin`: it discovers the device's
SunSpec models by walking the map from 40000 (``SunS``, then ID/L pairs to the end
marker), as a PLC or EMS would, and writes IEEE 1547 controls (model 704).

Modes:

* ``volt-watt`` (PV inverter): reads the voltage at the inverter (701 ``LNV``) and writes
  ``WMaxLimPct`` following a volt-watt curve: 100 % up to ``v_start``, falling linearly to
  0 % at ``v_stop`` (p.u. of 230 V). The limit only ever tightens while the voltage stays
  above ``v_start`` (a curtailed inverter lowers its own voltage; relaxing at once would
  oscillate) and relaxes by at most 5 %-points per cycle below it.
* ``volt-var`` (any inverter): writes a volt-var curve (``vv_v_pct``, ``vv_q_pct``: % of
  VNom, % of VarMax) into curve 2 of model 705, adopts it (``AdptCrvReq``), sets the
  reversion (``RvrtTms``, ``RvrtCrv`` 0: disabled on timeout) and enables it; then renews
  the function (705 ``Ena``) and its heartbeat (715 ``ControllerHb``) every cycle. The
  inverter runs the curve itself at every step (no emulation through 704).
* ``peak-shave`` (battery + a meter): reads the meter's import (213 ``W``, load convention)
  and writes a discharge set-point (704 ``WSet``, ``WSetEna``) for the part above the
  import limit; ``WSetEna`` off when not needed.

Each set-point is written with its reversion timer (``--revert-s``): if this process dies,
the device reverts by itself when the timer expires.
"""

from __future__ import annotations

import math
import struct
import sys
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException

__all__ = ["SunSpecClient", "run_controller"]

BASE = 40000
END = 0xFFFF


class SunSpecClient:
    """Minimal SunSpec point access over pymodbus: model addresses found by scanning."""

    def __init__(self, client: ModbusTcpClient, unit: int) -> None:
        self.c = client
        self.unit = unit
        self.models: dict[int, int] = {}
        self.scan()

    def _read(self, addr: int, count: int) -> list[int]:
        r = self.c.read_holding_registers(addr, count=count, device_id=self.unit)
        if r.isError():
            raise OSError(f"unit {self.unit}: read {addr}+{count} refused: {r}")
        return list(r.registers)

    def _write(self, addr: int, regs: list[int]) -> None:
        r = self.c.write_registers(addr, regs, device_id=self.unit)
        if r.isError():
            raise OSError(f"unit {self.unit}: write {addr} refused: {r}")

    def scan(self) -> None:
        if self._read(BASE, 2) != [0x5375, 0x6E53]:
            raise OSError(f"unit {self.unit}: no SunSpec map at {BASE}")
        addr = BASE + 2
        for _ in range(64):
            mid, length = self._read(addr, 2)
            if mid == END:
                return
            self.models[mid] = addr
            addr += 2 + length
        raise OSError(f"unit {self.unit}: no end marker")


# Offsets (from the model's ID register) of the few points used, per SunSpec's definitions
# of models 701, 704, 213 (fixed layouts).
_701 = {"W": 10, "LNV": 16, "W_SF": 116, "V_SF": 114}
_704 = {"WMaxLimPctEna": 14, "WMaxLimPct": 15, "WMaxLimPctEnaRvrt": 17, "WMaxLimPctRvrtTms": 18,
        "WSetEna": 22, "WSetMod": 23, "WSet": 24, "WSetEnaRvrt": 30, "WSetRvrtTms": 31,
        "WMaxLimPct_SF": 54, "WSet_SF": 55}
_213 = {"W": 2 + 26}
_701_SPAN = max(_701.values()) + 1  # one read covers every 701 point used (<= 125)
_702 = {"WMaxRtg": 2, "W_SF": 45}
# 705: header (Ena 2, AdptCrvReq 3, NPt 5, RvrtTms 7, RvrtCrv 11, V_SF 12, DeptRef_SF 13),
# then NCrv curves of 10 registers + NPt (V, Var) pairs; 715: ControllerHb at 5 (uint32)
_705 = {"Ena": 2, "AdptCrvReq": 3, "NPt": 5, "RvrtTms": 7, "RvrtCrv": 11, "V_SF": 12, "DeptRef_SF": 13,
        "Crv": 15}
_715 = {"ControllerHb": 5}


def _volt_var_setup(dev: SunSpecClient, v_pct: list[float], q_pct: list[float], revert_s: int) -> None:
    a = dev.models[705]
    hdr = dev._read(a, _705["Crv"])
    npt, v_sf, q_sf = hdr[_705["NPt"]], _s16(hdr[_705["V_SF"]]), _s16(hdr[_705["DeptRef_SF"]])
    if len(v_pct) != len(q_pct) or not 1 <= len(v_pct) <= npt:
        raise OSError(f"volt-var: {len(v_pct)} voltages, {len(q_pct)} var values (device: up to {npt})")
    crv2 = a + _705["Crv"] + 10 + 2 * npt
    dev._write(crv2, [len(v_pct)])  # ActPt
    regs: list[int] = []
    for v, q in zip(v_pct, q_pct, strict=True):
        regs += [round(v / 10.0**v_sf) & 0xFFFF, round(q / 10.0**q_sf) & 0xFFFF]
    dev._write(crv2 + 10, regs)
    dev._write(a + _705["RvrtTms"], [revert_s >> 16, revert_s & 0xFFFF])
    dev._write(a + _705["RvrtCrv"], [0])  # on timeout: the function is disabled
    dev._write(a + _705["AdptCrvReq"], [2])  # refused (0x03) when the curve breaks 1547's rules
    dev._write(a + _705["Ena"], [1])


def _s16(v: int) -> int:
    return v - 0x10000 if v >= 0x8000 else v


def _offsets_ok(sc: SunSpecClient) -> None:
    """Sanity check of the fixed offsets against the device (ID/L of each model)."""
    for mid, length in ((701, 153), (704, 65), (213, 124)):
        if mid in sc.models and sc._read(sc.models[mid] + 1, 1)[0] != length:
            raise OSError(f"unit {sc.unit}: model {mid} has an unexpected length")


def run_controller(*, host: str, port: int, unit: int, mode: str = "volt-watt",
                   v_start_pu: float = 1.03, v_stop_pu: float = 1.06, meter_unit: int | None = None,
                   import_limit_w: float = 20e3, period_s: float = 0.2, revert_s: int = 30,
                   duration_s: float | None = None, v_nom: float = 230.0,
                   vv_v_pct: tuple[float, ...] = (92.0, 98.0, 102.0, 108.0),
                   vv_q_pct: tuple[float, ...] = (44.0, 0.0, 0.0, -44.0)) -> int:
    """Control loop; returns an exit code (0 after ``duration_s`` or when the server ends)."""
    client = ModbusTcpClient(host, port=port, timeout=2, retries=1)
    t_end = None if duration_s is None else time.monotonic() + duration_s
    for _ in range(100):
        if client.connect():
            break
        time.sleep(0.1)
    else:
        print(f"controller: cannot connect to {host}:{port}", file=sys.stderr)
        return 1
    try:
        dev = SunSpecClient(client, unit)
        _offsets_ok(dev)
        if 704 not in dev.models:
            print(f"controller: unit {unit} has no DER controls (704)", file=sys.stderr)
            return 2
        meter = None
        if mode == "peak-shave":
            if meter_unit is None:
                print("controller: peak-shave needs --meter-unit", file=sys.stderr)
                return 2
            meter = SunSpecClient(client, meter_unit)
        a704, a701 = dev.models[704], dev.models[701]
        pct_sf = _s16(dev._read(a704 + _704["WMaxLimPct_SF"], 1)[0])
        w_sf = _s16(dev._read(a704 + _704["WSet_SF"], 1)[0])
        rvrt = [revert_s >> 16, revert_s & 0xFFFF]
        hb = 0
        if mode == "volt-var":
            if 705 not in dev.models:
                print(f"controller: unit {unit} has no volt-var model (705)", file=sys.stderr)
                return 2
            _volt_var_setup(dev, list(vv_v_pct), list(vv_q_pct), revert_s)
        elif mode == "volt-watt":
            # enable reversion first (timer), then the function
            dev._write(a704 + _704["WMaxLimPctEnaRvrt"], [1 if revert_s else 0, *rvrt])
        else:
            dev._write(a704 + _704["WSetMod"], [1])
            dev._write(a704 + _704["WSetEnaRvrt"], [1 if revert_s else 0, *rvrt])
        limit = 100.0
        m702 = dev._read(dev.models[702], 50)
        w_max = m702[_702["WMaxRtg"]] * 10.0 ** _s16(m702[_702["W_SF"]])
        print(f"controller: unit {unit} models {sorted(dev.models)}; mode {mode}", flush=True)
        while t_end is None or time.monotonic() < t_end:
            t0 = time.monotonic()
            if mode == "volt-var":  # renew the function (its reversion timer) and the heartbeat
                hb = (hb + 1) & 0xFFFFFFFF
                dev._write(dev.models[705] + _705["Ena"], [1])
                if 715 in dev.models:
                    dev._write(dev.models[715] + _715["ControllerHb"], [hb >> 16, hb & 0xFFFF])
            elif mode == "volt-watt":
                regs = dev._read(a701, _701_SPAN)
                if regs[_701["LNV"]] == 0xFFFF:  # SunSpec "not implemented": no measurement yet
                    time.sleep(period_s)
                    continue
                v_sf = _s16(regs[_701["V_SF"]])
                v = regs[_701["LNV"]] * 10.0**v_sf / v_nom
                curve = 100.0 * min(1.0, max(0.0, (v_stop_pu - v) / (v_stop_pu - v_start_pu)))
                limit = min(limit, curve) if v > v_start_pu else min(100.0, limit + 5.0)
                raw = round(limit / 10.0**pct_sf)
                dev._write(a704 + _704["WMaxLimPctEna"], [1, raw])
            else:
                assert meter is not None
                regs = meter._read(meter.models[213] + _213["W"], 2)
                w_import = struct.unpack(">f", struct.pack(">HH", *regs))[0]
                if math.isnan(w_import):
                    w_import = 0.0
                # proportional on the same step's measurements: the battery's own output
                # (701 W) plus the import above the limit, within the nameplate (702 WMaxRtg)
                m701 = dev._read(a701, _701_SPAN)
                raw_w = m701[_701["W"]]
                w_bat = 0.0 if raw_w == 0x8000 else _s16(raw_w) * 10.0 ** _s16(m701[_701["W_SF"]])
                target = min(w_max, max(0.0, w_bat + w_import - import_limit_w))
                raw = round(target / 10.0**w_sf) & 0xFFFFFFFF
                dev._write(a704 + _704["WSetEna"], [1 if target > 0 else 0])
                dev._write(a704 + _704["WSet"], [raw >> 16, raw & 0xFFFF])
            time.sleep(max(0.0, period_s - (time.monotonic() - t0)))
        return 0
    except (ConnectionException, ConnectionResetError, BrokenPipeError) as exc:
        # the serve process ended (a closed or reset connection): a controller just stops
        print(f"controller: server gone ({exc})", file=sys.stderr, flush=True)
        return 0
    except (OSError, ConnectionError) as exc:  # refused, or the connection dropped
        print(f"controller: {exc}", file=sys.stderr, flush=True)
        return 0 if not client.connected else 1
    except Exception as exc:  # a bug here must be loud, not a silent dead control loop
        print(f"controller: failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        client.close()
