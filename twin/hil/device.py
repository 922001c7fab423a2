"""One HIL device: its SunSpec register image, write validation and its DER controls.

Pure (no network, no mosaik). The register image is owned by a :class:`HILDevice` and
guarded by the bank's lock (:mod:`twin.hil.core`), so a read never sees half an update.

Sign conventions: DER points (701/704/802) use SunSpec's generator convention
(``W > 0`` injects into the grid: PV producing, battery discharging; ``W < 0`` absorbs:
battery or EV charging). The meter (213) uses the project's load convention
(``W > 0`` imports from the grid). Energies are Wh, voltages line-to-neutral volts.

Implemented controls (model 704, IEEE 1547-2018): ``WMaxLimPct`` (limit of active power
injection in % of ``WMaxRtg``; of absorption for an EV charger), ``WSet``/``WSetPct``
(active-power set-point; for PV and EV a cap on what the device has available, for a
battery an exact set-point within its state of charge), ``PFWInj`` (power factor while
injecting) — each with its enable, its revert value, and its reversion timer
(``*EnaRvrt``, ``*RvrtTms``, ``*RvrtRem``): a write to the function (set-point or enable)
while reversion is enabled (re)starts the timer; when it expires without renewal the
set-point reverts to the ``*Rvrt`` value (controller watchdog). Model 802: ``SetOp``
(connect/disconnect the battery) and the controller heartbeat ``CtrlHb``. Every other
point is read-only; a write to it is refused with exception 0x03.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from twin.agents.controls import DERControl
from twin.hil.sunspec_map import (
    Point,
    RegisterMap,
    build_register_map,
    decode_raw,
    encode_raw,
    is_sentinel,
)

__all__ = [
    "ILLEGAL_ADDRESS",
    "ILLEGAL_VALUE",
    "DERControl",
    "DeviceSpec",
    "HILDevice",
    "Measurement",
    "WriteRejected",
]

ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03

V_NOM = 230.0
HZ_NOM = 50.0
PF_MIN = 0.8  # nameplate PFOvrExtRtg / PFUndExtRtg
MAX_RVRT_S = 86_400  # longest accepted reversion time
DC_V_NOM = 400.0  # battery DC bus, for 802's V, A and AHRtg


class WriteRejected(Exception):
    """A write refused as a whole; ``code`` is the Modbus exception code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A HIL device resolved from the scenario: what it is and what it mirrors."""

    unit_id: int
    name: str
    kind: Literal["pv_inverter", "battery", "ev_charger", "meter"]
    nameplate_w: float
    capacity_wh: float = 0.0  # battery / EV
    soc_min: float = 0.0
    soc_max: float = 1.0
    soc_init: float = 0.5
    serial: str = ""


@dataclass(frozen=True, slots=True)
class Measurement:
    """The twin's state of one device at one step (see the module's sign conventions)."""

    w: float
    var: float = 0.0
    v: float = V_NOM  # line-to-neutral volts
    hz: float = HZ_NOM
    soc: float | None = None  # fraction; None: the device integrates its own
    available_w: float | None = None  # what the device could do without controls


def _sf_for(max_value: float, raw_max: int) -> int:
    """Smallest scale factor (>= -3) so that ``max_value`` fits in ``raw_max``."""
    sf = -3
    while max_value / 10.0**sf > raw_max and sf < 9:
        sf += 1
    return sf


@dataclass
class _Function:
    """One 704 function with a reversion timer (WMaxLimPct, WSet, PFWInj)."""

    deadline_s: float | None = None


@dataclass
class _Writable:
    """Range check of one writable point in engineering units (after scaling)."""

    lo: float
    hi: float
    what: str = ""


class HILDevice:
    """Register image, validation and control state of one device."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.map: RegisterMap = build_register_map(spec.kind)
        self.regs: list[int] = self.map.initial_image()
        #: what clients read: an immutable copy of ``regs`` swapped by reference
        self.published: tuple[int, ...] = tuple(self.regs)
        self.energy_inj_wh = 0.0
        self.energy_abs_wh = 0.0
        self.varh_inj = 0.0
        self.varh_abs = 0.0
        self.soc = spec.soc_init
        self.last_w = 0.0
        rated = max(spec.nameplate_w, 1.0)
        self.w_sf = _sf_for(1.2 * rated, 32767)
        self.a_sf = _sf_for(1.2 * rated / (3 * 0.9 * V_NOM), 32767)
        self._functions = {"WMaxLimPct": _Function(), "WSet": _Function(), "PFWInj": _Function()}
        self._writable: dict[tuple[int, str], _Writable] = {}
        self._fill_static()
        self.publish()

    def publish(self) -> None:
        """Make the current image what clients read (one reference swap)."""
        self.published = tuple(self.regs)

    # ------------------------------------------------------------------ image helpers
    def _p(self, model: int, name: str) -> Point:
        return self.map.point(model, name)

    def _sf_value(self, point: Point) -> int:
        if point.sf is None:
            return 0
        sf_pt = self._p(point.model_id, point.sf)
        raw = decode_raw(sf_pt, self._regs_of(sf_pt))
        return int(raw) if isinstance(raw, int) else 0

    def _regs_of(self, p: Point) -> list[int]:
        o = p.addr - self.map.start
        return self.regs[o:o + p.size]

    def _put(self, regs: list[int], model: int, name: str, value: Any, *, sf: int | None = None) -> None:
        """Write ``value`` (engineering units; None -> sentinel) into ``regs`` (an image)."""
        p = self._p(model, name)
        if value is None or p.type in ("string", "float32", "float64") or (p.sf is None and sf is None):
            raw = value
        else:
            s = sf if sf is not None else self._sf_value(p)
            raw = float(value) / 10.0**s
        o = p.addr - self.map.start
        regs[o:o + p.size] = encode_raw(p, raw)

    def get(self, model: int, name: str) -> Any:
        """Engineering value of a point (None when not implemented)."""
        p = self._p(model, name)
        raw = decode_raw(p, self._regs_of(p))
        if raw is None or p.sf is None or isinstance(raw, str):
            return raw
        return raw * 10.0 ** self._sf_value(p)

    # ------------------------------------------------------------------ static points
    def _fill_static(self) -> None:
        s, r = self.spec, self.regs
        val: Any
        put = self._put
        put(r, 1, "Mn", "gridtwin")
        put(r, 1, "Md", f"twin-{s.kind}")
        put(r, 1, "Vr", "1.0")
        put(r, 1, "SN", s.serial or f"{s.name}-{s.unit_id}")
        if s.kind == "meter":
            put(r, 213, "Evt", 0)
            return
        rated = s.nameplate_w
        for name, val in (("A_SF", self.a_sf), ("V_SF", -1), ("Hz_SF", -2), ("W_SF", self.w_sf),
                          ("PF_SF", -3), ("VA_SF", self.w_sf), ("Var_SF", self.w_sf),
                          ("TotWh_SF", 0), ("TotVarh_SF", 0)):
            put(r, 701, name, val)
        put(r, 701, "ACType", 2)
        put(r, 701, "ThrotSrc", 0)
        put(r, 701, "Alrm", 0)
        for name, val in (("W_SF", self.w_sf), ("PF_SF", -3), ("VA_SF", self.w_sf),
                          ("Var_SF", self.w_sf), ("V_SF", -1), ("A_SF", self.a_sf)):
            put(r, 702, name, val)
        inject = s.kind != "ev_charger"
        absorb = s.kind != "pv_inverter"
        put(r, 702, "WMaxRtg", rated)
        put(r, 702, "WMax", rated)
        put(r, 702, "VAMaxRtg", rated)
        put(r, 702, "VAMax", rated)
        q_max = rated * math.tan(math.acos(PF_MIN))
        for name in ("VarMaxInjRtg", "VarMaxAbsRtg", "VarMaxInj", "VarMaxAbs"):
            put(r, 702, name, min(q_max, 1.2 * rated))
        if absorb:
            put(r, 702, "WChaRteMaxRtg", rated)
            put(r, 702, "WChaRteMax", rated)
        if inject and s.kind == "battery":
            put(r, 702, "WDisChaRteMaxRtg", rated)
            put(r, 702, "WDisChaRteMax", rated)
        for name, val in (("VNomRtg", V_NOM), ("VMaxRtg", 1.15 * V_NOM), ("VMinRtg", 0.85 * V_NOM),
                          ("VNom", V_NOM), ("VMax", 1.1 * V_NOM), ("VMin", 0.88 * V_NOM),
                          ("PFOvrExtRtg", PF_MIN), ("PFUndExtRtg", PF_MIN)):
            put(r, 702, name, val)
        # 704: scale factors and the implemented functions' defaults
        for name, val in (("PF_SF", -3), ("WMaxLimPct_SF", -1), ("WSet_SF", self.w_sf),
                          ("WSetPct_SF", -1)):
            put(r, 704, name, val)
        for name, val in (("WMaxLimPctEna", 0), ("WMaxLimPct", 100.0), ("WMaxLimPctRvrt", 100.0),
                          ("WMaxLimPctEnaRvrt", 0), ("WMaxLimPctRvrtTms", 0),
                          ("WMaxLimPctRvrtRem", 0), ("WSetEna", 0), ("WSetMod", 1), ("WSet", 0),
                          ("WSetRvrt", 0), ("WSetPct", 0), ("WSetPctRvrt", 0), ("WSetEnaRvrt", 0),
                          ("WSetRvrtTms", 0), ("WSetRvrtRem", 0), ("PFWInjEna", 0),
                          ("PFWInjEnaRvrt", 0), ("PFWInjRvrtTms", 0), ("PFWInjRvrtRem", 0),
                          ("PFWInj.PF", 1.0), ("PFWInj.Ext", 0), ("PFWInjRvrt.PF", 1.0),
                          ("PFWInjRvrt.Ext", 0)):
            put(r, 704, name, val)
        w_lo = -rated if absorb else 0.0
        w_hi = rated if inject else 0.0
        wr = self._writable
        for name in ("WMaxLimPctEna", "WMaxLimPctEnaRvrt", "WSetEna", "WSetEnaRvrt", "PFWInjEna",
                     "PFWInjEnaRvrt", "PFWInj.Ext", "PFWInjRvrt.Ext"):
            wr[(704, name)] = _Writable(0, 1)
        wr[(704, "WSetMod")] = _Writable(0, 1)
        for name in ("WMaxLimPct", "WMaxLimPctRvrt"):
            wr[(704, name)] = _Writable(0.0, 100.0, "percent of WMaxRtg")
        for name in ("WSet", "WSetRvrt"):
            wr[(704, name)] = _Writable(w_lo, w_hi, "nameplate WMaxRtg / WChaRteMaxRtg")
        pct_lo, pct_hi = (-100.0 if absorb else 0.0), (100.0 if inject else 0.0)
        for name in ("WSetPct", "WSetPctRvrt"):
            wr[(704, name)] = _Writable(pct_lo, pct_hi, "percent of nameplate")
        for name in ("WMaxLimPctRvrtTms", "WSetRvrtTms", "PFWInjRvrtTms"):
            wr[(704, name)] = _Writable(0, MAX_RVRT_S, "seconds")
        for name in ("PFWInj.PF", "PFWInjRvrt.PF"):
            wr[(704, name)] = _Writable(PF_MIN, 1.0, "nameplate PFOvrExtRtg")
        if s.kind == "battery":
            cap = s.capacity_wh
            for name, val in (("AHRtg_SF", _sf_for(cap / DC_V_NOM, 65534)),
                              ("WHRtg_SF", _sf_for(cap, 65534)),
                              ("WChaDisChaMax_SF", _sf_for(rated, 65534)), ("SoC_SF", -1),
                              ("V_SF", -1), ("CellV_SF", -3), ("A_SF", -1), ("AMax_SF", -1),
                              ("W_SF", self.w_sf)):
                put(r, 802, name, val)
            for name, val in (("AHRtg", cap / DC_V_NOM), ("WHRtg", cap), ("WChaRteMax", rated),
                              ("WDisChaRteMax", rated), ("SoCMax", 100 * s.soc_max),
                              ("SoCMin", 100 * s.soc_min), ("LocRemCtl", 0), ("Typ", 4),
                              ("State", 3), ("Evt1", 0), ("Evt2", 0), ("EvtVnd1", 0), ("EvtVnd2", 0),
                              ("V", DC_V_NOM), ("SetOp", 1), ("SetInvState", 3), ("AlmRst", 0),
                              ("CtrlHb", 0)):
                put(r, 802, name, val)
            wr[(802, "SetOp")] = _Writable(1, 2)
            wr[(802, "CtrlHb")] = _Writable(0, 65534)

    # ------------------------------------------------------------------ client writes
    def validate_write(self, addr: int, values: Sequence[int]) -> list[tuple[Point, list[int]]]:
        """The points a write covers, or :class:`WriteRejected` (nothing is applied)."""
        n = len(values)
        if not self.map.contains(addr, n):
            raise WriteRejected(ILLEGAL_ADDRESS, f"registers {addr}..{addr + n - 1} outside the map")
        out: list[tuple[Point, list[int]]] = []
        a = addr
        while a < addr + n:
            p = self.map.point_at(a)
            if p is None or p.name in ("ID", "L"):
                raise WriteRejected(ILLEGAL_VALUE, f"register {a} is a read-only marker")
            if p.addr != a or p.end > addr + n:
                raise WriteRejected(ILLEGAL_VALUE, f"write splits point {p.model_id}.{p.name}")
            regs = [int(v) for v in values[a - addr:p.end - addr]]
            rule = self._writable.get((p.model_id, p.name))
            if p.access != "RW" or rule is None:
                raise WriteRejected(ILLEGAL_VALUE, f"point {p.model_id}.{p.name} is read-only")
            if is_sentinel(p, regs):
                raise WriteRejected(ILLEGAL_VALUE, f"{p.name}: not-a-number value")
            raw = decode_raw(p, regs)
            if p.symbols is not None and raw not in p.symbols:
                raise WriteRejected(ILLEGAL_VALUE, f"{p.name}: {raw} is not one of its symbols")
            if not isinstance(raw, (int, float)):
                raise WriteRejected(ILLEGAL_VALUE, f"{p.name}: not a number")
            val = raw * 10.0 ** self._sf_value(p) if p.sf else float(raw)
            if not (rule.lo - 1e-9 <= val <= rule.hi + 1e-9):
                raise WriteRejected(
                    ILLEGAL_VALUE,
                    f"{p.name}: {val:g} outside [{rule.lo:g}, {rule.hi:g}]"
                    + (f" ({rule.what})" if rule.what else ""),
                )
            out.append((p, regs))
            a = p.end
        return out

    def apply_write(self, points: list[tuple[Point, list[int]]], *, now_s: float) -> list[str]:
        """Store validated points; (re)start reversion timers. Returns the point names."""
        names = []
        for p, regs in points:
            o = p.addr - self.map.start
            self.regs[o:o + p.size] = regs
            names.append(p.name)
        touched = {n.split(".")[0] for n in names}
        for fn in self._functions:
            ena = f"{fn}Ena"
            if fn == "WSet":
                keys = {"WSet", "WSetPct", "WSetEna", "WSetMod", "WSetEnaRvrt", "WSetRvrtTms"}
            else:
                keys = {fn, ena, f"{fn}EnaRvrt", f"{fn}RvrtTms"}
            if touched & keys:
                self._arm(fn, now_s)
        return names

    def _arm(self, fn: str, now_s: float) -> None:
        ena_rvrt = self.get(704, f"{fn}EnaRvrt")
        tms = self.get(704, f"{fn}RvrtTms") or 0
        ena = self.get(704, f"{fn}Ena")
        if ena_rvrt == 1 and ena == 1 and tms > 0:
            self._functions[fn].deadline_s = now_s + float(tms)
        else:
            self._functions[fn].deadline_s = None

    # ------------------------------------------------------------------ twin side
    def tick(self, now_s: float) -> list[str]:
        """Expire reversion timers at ``now_s``; returns the functions that reverted."""
        if self.spec.kind == "meter":
            return []
        reverted = []
        r = self.regs
        for fn, st in self._functions.items():
            if st.deadline_s is None:
                self._put(r, 704, f"{fn}RvrtRem", 0)
                continue
            rem = st.deadline_s - now_s
            if rem > 0:
                self._put(r, 704, f"{fn}RvrtRem", math.ceil(rem))
                continue
            st.deadline_s = None
            self._put(r, 704, f"{fn}RvrtRem", 0)
            if fn == "PFWInj":
                for sub in ("PF", "Ext"):
                    p_from, p_to = self._p(704, f"PFWInjRvrt.{sub}"), self._p(704, f"PFWInj.{sub}")
                    o = p_to.addr - self.map.start
                    r[o:o + p_to.size] = self._regs_of(p_from)
            elif fn == "WSet":
                for name in ("WSet", "WSetPct"):
                    p_from, p_to = self._p(704, f"{name}Rvrt"), self._p(704, name)
                    o = p_to.addr - self.map.start
                    r[o:o + p_to.size] = self._regs_of(p_from)
            else:
                p_from, p_to = self._p(704, "WMaxLimPctRvrt"), self._p(704, "WMaxLimPct")
                o = p_to.addr - self.map.start
                r[o:o + p_to.size] = self._regs_of(p_from)
            reverted.append(fn)
        return reverted

    def control(self) -> DERControl:
        """The controls currently in force (read from the image)."""
        s = self.spec
        if s.kind == "meter":
            return DERControl()
        rated = s.nameplate_w
        w_max = None
        if self.get(704, "WMaxLimPctEna") == 1:
            w_max = rated * float(self.get(704, "WMaxLimPct")) / 100.0
        w_set = None
        if self.get(704, "WSetEna") == 1:
            if self.get(704, "WSetMod") == 1:
                w_set = float(self.get(704, "WSet"))
            else:
                w_set = rated * float(self.get(704, "WSetPct")) / 100.0
        pf = None
        over = True
        if self.get(704, "PFWInjEna") == 1:
            pf = float(self.get(704, "PFWInj.PF"))
            over = self.get(704, "PFWInj.Ext") == 0
        connected = True
        if s.kind == "battery":
            connected = self.get(802, "SetOp") != 2
        return DERControl(w_max_w=w_max, w_set_w=w_set, pf=pf,
                          pf_over_excited=over, connected=connected)

    def measure(self, m: Measurement, *, dt_s: float) -> None:
        """Put one step's measurement into the image (integrating energies over ``dt_s``)."""
        s, r = self.spec, self.regs
        w, var, v = float(m.w), float(m.var), float(m.v)
        va = math.hypot(w, var)
        pf = abs(w) / va if va > 0 else 1.0
        amps = va / (3.0 * v) if v > 0 else 0.0
        hours = max(dt_s, 0.0) / 3600.0
        if s.kind == "meter":
            # load convention: w > 0 imports
            self.energy_abs_wh += max(w, 0.0) * hours
            self.energy_inj_wh += max(-w, 0.0) * hours
            for name, val in (("A", amps), ("PhV", v), ("PPV", v * math.sqrt(3)), ("Hz", m.hz),
                              ("W", w), ("VA", va), ("VAR", var), ("PF", pf),
                              ("TotWhImp", self.energy_abs_wh), ("TotWhExp", self.energy_inj_wh)):
                self._put(r, 213, name, val)
            for ph in ("A", "B", "C"):
                for name, val in ((f"Aph{ph}", amps), (f"PhVph{ph}", v), (f"Wph{ph}", w / 3),
                                  (f"VAph{ph}", va / 3), (f"VARph{ph}", var / 3), (f"PFph{ph}", pf)):
                    self._put(r, 213, name, val)
            for name, val in (("PPVphAB", v * math.sqrt(3)), ("PPVphBC", v * math.sqrt(3)),
                              ("PPVphCA", v * math.sqrt(3))):
                self._put(r, 213, name, val)
            self.last_w = w
            return
        # DER: generator convention
        self.energy_inj_wh += max(w, 0.0) * hours
        self.energy_abs_wh += max(-w, 0.0) * hours
        self.varh_inj += max(var, 0.0) * hours
        self.varh_abs += max(-var, 0.0) * hours
        throttled = m.available_w is not None and abs(w) < abs(m.available_w) - 1.0
        running = abs(w) > 0.5
        connected = self.control().connected
        for name, val in (("St", 1 if connected else 0),
                          ("InvSt", (4 if throttled else 3) if running else 7),
                          ("ConnSt", 1 if connected else 0), ("W", w), ("VA", va), ("Var", var),
                          ("PF", pf), ("A", amps), ("LNV", v), ("LLV", v * math.sqrt(3)),
                          ("Hz", m.hz), ("TotWhInj", self.energy_inj_wh),
                          ("TotWhAbs", self.energy_abs_wh), ("TotVarhInj", self.varh_inj),
                          ("TotVarhAbs", self.varh_abs)):
            self._put(r, 701, name, val)
        thr = 0.0
        if m.available_w and abs(m.available_w) > 0:
            thr = max(0.0, 100.0 * (1.0 - abs(w) / abs(m.available_w)))
        self._put(r, 701, "ThrotPct", min(round(thr), 100))
        if s.kind == "battery":
            if m.soc is not None:
                self.soc = float(m.soc)
            elif s.capacity_wh > 0:
                self.soc = min(1.0, max(0.0, self.soc - w * hours / s.capacity_wh))
            st = 3 if w > 0.5 else 4 if w < -0.5 else 6
            if self.soc >= s.soc_max - 1e-6 and w <= 0.5:
                st = 5
            elif self.soc <= s.soc_min + 1e-6 and w >= -0.5:
                st = 2
            for name, val in (("SoC", 100.0 * self.soc), ("W", w), ("A", w / DC_V_NOM),
                              ("ChaSt", st), ("State", 3 if connected else 1)):
                self._put(r, 802, name, val)
        self.last_w = w

    def battery_limits_w(self) -> tuple[float, float]:
        """``(max_charge_w, max_discharge_w)`` for one step given the state of charge."""
        s = self.spec
        if s.kind != "battery":
            return s.nameplate_w, s.nameplate_w
        can_charge = s.nameplate_w if self.soc < s.soc_max - 1e-6 else 0.0
        can_discharge = s.nameplate_w if self.soc > s.soc_min + 1e-6 else 0.0
        return can_charge, can_discharge

    def describe(self) -> dict[str, Any]:
        return {"unit_id": self.spec.unit_id, "device": self.spec.name, "kind": self.spec.kind,
                "models": list(self.map.model_ids), "nameplate_w": self.spec.nameplate_w,
                "registers": [self.map.start, self.map.end - 1]}
