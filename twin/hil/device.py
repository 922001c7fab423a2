"""One HIL device: its SunSpec register image, write validation, controls and one step.

Pure (no network, no mosaik). The register image is owned by a :class:`HILDevice` and
guarded by the bank's lock (:mod:`twin.hil.core`), so a read never sees half an update.

Sign conventions: DER points use SunSpec's generator convention (``W > 0`` injects: PV
producing, battery discharging; ``W < 0`` absorbs: battery or EV charging). The meter (213)
uses the project's load convention (``W > 0`` imports). Energies Wh, voltages line-to-neutral.

Every inverter-based device carries the IEEE 1547 SunSpec set (701-715, 802 for a battery);
what a client may write, in what range, is :mod:`twin.hil.der_defaults`; what the device does
with it, :mod:`twin.hil.der_behaviour`. A write is checked as a whole (each point, then the
model's consistency and, for ``AdptCrvReq``, the adopted curve) and applied entirely or not
at all. Writes to curves 2.. are adopted into curve 1 (the active one, read-only) by
``AdptCrvReq``/``AdptCtlReq``.

Reversion: a write to a 704 function (set-point, enable, ``*EnaRvrt``, ``*RvrtTms``) with
``*RvrtTms > 0`` (re)starts its timer; at expiry the function's enable takes ``*EnaRvrt``
(0: the function is lifted, the device is back on its own dispatch) and its set-points their
``*Rvrt`` values. Curve models 705/706/711/712 revert to curve ``RvrtCrv`` (0: disabled).
Heartbeats (715 ``ControllerHb``, 802 ``CtrlHb``): once a controller has written one, a
heartbeat missing for ``heartbeat_timeout_s`` reverts every timed function as if its timer
had expired, and 802 ``SetOp`` / 715 ``OpCtl`` return to connected / start.
"""

from __future__ import annotations

import logging
import math
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from twin.agents.controls import DERControl
from twin.grid.der_functions import DerFleet, DerFunctionError
from twin.hil.der_behaviour import (
    CURVE_MODELS,
    FN_704,
    TRIP_ALARM_BIT,
    TRIP_MODELS,
    StepResult,
    TripState,
    curve_errors,
    der_functions,
    evaluate,
)
from twin.hil.der_defaults import DC_V_NOM, HZ_NOM, V_NOM, Writable, fill_defaults, sf_for
from twin.hil.sunspec_map import (
    Point,
    RegisterMap,
    build_register_map,
    decode_raw,
    encode_raw,
    is_sentinel,
    raw_range,
)

#: one-register integer types (the fast path of :meth:`HILDevice._put`)
_INT16 = frozenset({"int16", "uint16", "count", "acc16", "enum16", "bitfield16", "sunssf"})

__all__ = [
    "ILLEGAL_ADDRESS",
    "ILLEGAL_VALUE",
    "V_NOM",
    "DERControl",
    "DeviceSpec",
    "HILDevice",
    "Measurement",
    "WriteRejected",
]

ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
_log = logging.getLogger("twin.hil")


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
    heartbeat_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Measurement:
    """The twin's state of one device at one step (see the module's sign conventions)."""

    w: float
    var: float = 0.0
    v: float = V_NOM  # line-to-neutral volts
    hz: float = HZ_NOM
    soc: float | None = None  # fraction; None: the device integrates its own
    available_w: float | None = None  # what the device would do on its own
    in_service: bool = True
    #: :attr:`twin.hil.der_behaviour.StepResult.state` ("tripped:708", "ceased:707", ...)
    state: str = ""


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
        self.dc_wh_inj = 0.0
        self.dc_wh_abs = 0.0
        self.soc = spec.soc_init
        self.last_w = 0.0
        self.hb_count = 0
        rated = max(spec.nameplate_w, 1.0)
        self.w_sf = sf_for(1.2 * rated, 32767)
        self.a_sf = sf_for(1.2 * rated / (0.9 * V_NOM), 32767)
        self.deadlines: dict[str | int, float] = {}  # 704 function or curve model -> expiry (twin s)
        self.last_hb_s: float | None = None
        self.trip = TripState()
        self._fleet: tuple[DerFleet, str] | None = None
        self._writable: dict[tuple[int, str], Writable] = {}
        #: (model, name) -> (point, first, end offset, (scale-factor point, offset) or None)
        self._loc: dict[tuple[int, str], tuple[Point, int, int, tuple[Point, int, int] | None]] = {}
        #: (model, name) -> (its registers, its scale factor's, engineering value): a value
        #: is a pure function of those registers, so a read decodes only what changed
        self._values: dict[tuple[int, str], tuple[tuple[int, ...], tuple[int, ...] | None, Any]] = {}
        self._fill_static()
        self.publish()

    def publish(self) -> None:
        """Make the current image what clients read (one reference swap each): the
        registers, and the same as big-endian bytes, the Modbus wire form a read slices."""
        self.published = tuple(self.regs)
        wire = array("H", self.regs)
        if sys.byteorder == "little":
            wire.byteswap()
        self.published_be: bytes = wire.tobytes()

    # ------------------------------------------------------------------ image helpers
    def _p(self, model: int, name: str) -> Point:
        return self.map.point(model, name)

    def _where(self, model: int, name: str) -> tuple[Point, int, int, tuple[Point, int, int] | None]:
        loc = self._loc.get((model, name))
        if loc is None:
            p = self.map.point(model, name)
            o = p.addr - self.map.start
            sf = None
            if p.sf is not None:
                sp = self.map.point(p.model_id, p.sf)
                so = sp.addr - self.map.start
                sf = (sp, so, so + sp.size)
            loc = self._loc[(model, name)] = (p, o, o + p.size, sf)
        return loc

    def _raw(self, p: Point, regs: Sequence[int]) -> Any:
        o = p.addr - self.map.start
        return decode_raw(p, regs[o:o + p.size])

    def _sf_value(self, point: Point, regs: Sequence[int]) -> int:
        if point.sf is None:
            return 0
        raw = self._raw(self._p(point.model_id, point.sf), regs)
        return int(raw) if isinstance(raw, int) else 0

    def _put(self, regs: list[int], model: int, name: str, value: Any) -> None:
        """Write ``value`` (engineering units; None -> sentinel) into ``regs`` (an image)."""
        p, o, e, sf = self._where(model, name)
        if value is None or sf is None or p.type in ("string", "float32", "float64"):
            raw = value
        else:
            sp, so, se = sf
            if sp.type == "sunssf":  # int16, 0x8000 not implemented (-> 0)
                x = regs[so]
                exp = 0 if x == 0x8000 else x - 0x10000 if x >= 0x8000 else x
            else:
                got = decode_raw(sp, regs[so:se])
                exp = int(got) if isinstance(got, int) else 0
            raw = float(value) / 10.0 ** exp
        if e - o == 1 and isinstance(raw, float) and p.type in _INT16:  # the common case, fast
            if math.isfinite(raw):
                n = round(raw)
                lo, hi = raw_range(p)
                if lo <= n <= hi:
                    regs[o] = n & 0xFFFF
                    return
        regs[o:e] = encode_raw(p, raw)

    def put_point(self, model: int, name: str, value: Any) -> None:
        self._put(self.regs, model, name, value)

    def get(self, model: int, name: str, regs: Sequence[int] | None = None) -> Any:
        """Engineering value of a point (None when not implemented)."""
        r = self.regs if regs is None else regs
        p, o, e, sf = self._where(model, name)
        mine = tuple(r[o:e])
        scale = tuple(r[sf[1]:sf[2]]) if sf is not None else None
        key = (model, name)
        hit = self._values.get(key)
        if hit is not None and hit[0] == mine and hit[1] == scale:
            return hit[2]
        raw = decode_raw(p, mine)
        if raw is None or sf is None or isinstance(raw, str):
            value: Any = raw
        else:
            exp = decode_raw(sf[0], scale or ())
            value = raw * 10.0 ** (int(exp) if isinstance(exp, int) else 0)
        self._values[key] = (mine, scale, value)
        return value

    def _copy(self, model: int, dst: str, src: str) -> None:
        p_to, p_from = self._p(model, dst), self._p(model, src)
        o, f = p_to.addr - self.map.start, p_from.addr - self.map.start
        self.regs[o:o + p_to.size] = self.regs[f:f + p_from.size]

    @property
    def is_der(self) -> bool:
        return self.spec.kind != "meter"

    # ------------------------------------------------------------------ static points
    def _fill_static(self) -> None:
        s, r = self.spec, self.regs
        val: Any
        for name, val in (("Mn", "gridtwin"), ("Md", f"twin-{s.kind}"), ("Vr", "1.1"),
                          ("SN", s.serial or f"{s.name}-{s.unit_id}")):
            self._put(r, 1, name, val)
        if s.kind == "meter":
            self._put(r, 213, "Evt", 0)
            return
        for name, val in (("A_SF", self.a_sf), ("V_SF", -1), ("Hz_SF", -2), ("W_SF", self.w_sf),
                          ("PF_SF", -3), ("VA_SF", self.w_sf), ("Var_SF", self.w_sf),
                          ("TotWh_SF", 0), ("TotVarh_SF", 0)):
            self._put(r, 701, name, val)
        for name, val in (("ACType", 2), ("ThrotSrc", 0), ("Alrm", 0), ("DERMode", 1)):
            self._put(r, 701, name, val)
        self._writable = fill_defaults(lambda m, n, v: self._put(r, m, n, v), kind=s.kind,
                                       rated_w=s.nameplate_w, capacity_wh=s.capacity_wh,
                                       w_sf=self.w_sf, soc=(s.soc_min, s.soc_max))

    # ------------------------------------------------------------------ client writes
    def validate_write(self, addr: int, values: Sequence[int]) -> list[tuple[Point, list[int]]]:
        """The points a write covers, or :class:`WriteRejected` (nothing is applied)."""
        n = len(values)
        if not self.map.contains(addr, n):
            raise WriteRejected(ILLEGAL_ADDRESS, f"registers {addr}..{addr + n - 1} outside the map")
        out: list[tuple[Point, list[int]]] = []
        scratch = list(self.regs)
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
                why = "read-only"
                if p.access == "RW" and ("Crv[1]." in p.name or "Ctl[1]." in p.name):
                    why = "in curve 1, the active curve (write curve 2.. and adopt it with AdptCrvReq)"
                elif p.access == "RW":
                    why = "not implemented by this device"
                raise WriteRejected(ILLEGAL_VALUE, f"point {p.model_id}.{p.name} is {why}")
            if is_sentinel(p, regs):
                raise WriteRejected(ILLEGAL_VALUE, f"{p.model_id}.{p.name}: not-a-number value")
            raw = decode_raw(p, regs)
            if not isinstance(raw, (int, float)):
                raise WriteRejected(ILLEGAL_VALUE, f"{p.model_id}.{p.name}: not a number")
            if rule.allowed is not None or p.symbols is not None:
                allowed = rule.allowed if rule.allowed is not None else p.symbols
                if raw not in (allowed or ()):
                    raise WriteRejected(ILLEGAL_VALUE, f"{p.model_id}.{p.name}: {raw} is not one of "
                                                       f"{sorted(allowed or ())}")
            else:
                val = raw * 10.0 ** self._sf_value(p, scratch) if p.sf else float(raw)
                if not (rule.lo - 1e-9 <= val <= rule.hi + 1e-9):
                    raise WriteRejected(ILLEGAL_VALUE, f"{p.model_id}.{p.name}: {val:g} outside "
                                                       f"[{rule.lo:g}, {rule.hi:g}]"
                                                       + (f" ({rule.what})" if rule.what else ""))
            o = p.addr - self.map.start
            scratch[o:o + p.size] = regs
            out.append((p, regs))
            a = p.end
        self._check_consistency(scratch, {p.model_id for p, _ in out})
        return out

    def _check_consistency(self, scratch: list[int], models: set[int]) -> None:
        def get(m: int, name: str) -> Any:
            return self.get(m, name, scratch)

        errs: list[str] = []
        if 703 in models:
            if get(703, "ESVLo") >= get(703, "ESVHi"):
                errs.append("703: ESVLo must be below ESVHi")
            if get(703, "ESHzLo") >= get(703, "ESHzHi"):
                errs.append("703: ESHzLo must be below ESHzHi")
        if 702 in models and not get(702, "VMin") < get(702, "VNom") < get(702, "VMax"):
            errs.append("702: VMin < VNom < VMax must hold")
        for m in CURVE_MODELS:
            if m not in models:
                continue
            req = get(m, "AdptCtlReq" if m == 711 else "AdptCrvReq")
            if req and req > 1:
                errs += curve_errors(get, m, int(req), can_absorb=self.spec.kind != "pv_inverter")
        if errs:
            raise WriteRejected(ILLEGAL_VALUE, "; ".join(errs))

    def apply_write(self, points: list[tuple[Point, list[int]]], *, now_s: float) -> list[str]:
        """Store validated points; adopt curves, (re)start timers. Returns the point names."""
        names = []
        for p, regs in points:
            o = p.addr - self.map.start
            self.regs[o:o + p.size] = regs
            names.append(f"{p.model_id}.{p.name}")
        models = {p.model_id for p, _ in points}
        touched = {p.name.split(".")[0] for p, _ in points if p.model_id == 704}
        for m in CURVE_MODELS:
            if m in models:
                self._adopt_requested(m)
        for fn in FN_704:
            keys = {fn, f"{fn}Ena", f"{fn}EnaRvrt", f"{fn}RvrtTms", f"{fn}Rvrt"}
            if fn == "WSet":
                keys |= {"WSetPct", "WSetMod"}
            if fn == "VarSet":
                keys |= {"VarSetPct", "VarSetMod", "VarSetPri"}
            if touched & keys:
                self._arm(fn, float(self.get(704, f"{fn}RvrtTms") or 0), now_s)
        for m in (705, 706, 711, 712):
            if m in models:
                self._arm(m, float(self.get(m, "RvrtTms") or 0), now_s)
        if any(p.name in ("ControllerHb", "CtrlHb") for p, _ in points):
            self.last_hb_s = now_s
        self._fleet = None
        return names

    def adoption_failed(self, addr: int, n: int) -> bool:
        """After a refused write: mark ``AdptCrvRslt`` FAILED where it asked for adoption."""
        hit = False
        for m in CURVE_MODELS:
            if not self.is_der:
                break
            p = self._p(m, "AdptCtlReq" if m == 711 else "AdptCrvReq")
            if addr <= p.addr < addr + n:
                self.put_point(m, "AdptCtlRslt" if m == 711 else "AdptCrvRslt", 2)
                hit = True
        return hit

    def _adopt_requested(self, m: int) -> None:
        req_name = "AdptCtlReq" if m == 711 else "AdptCrvReq"
        req = int(self.get(m, req_name) or 0)
        if req > 1:
            self._adopt(m, req)
        if req:
            self.put_point(m, "AdptCtlRslt" if m == 711 else "AdptCrvRslt", 1)
            self.put_point(m, req_name, 0)

    def _adopt(self, m: int, c: int) -> None:
        """Copy curve ``c`` of model ``m`` into curve 1 (the active one)."""
        grp = "Ctl" if m == 711 else "Crv"
        for p in self.map.blocks[self.map.model_ids.index(m)].points:
            if p.name.startswith(f"{grp}[{c}].") and not p.name.endswith("ReadOnly"):
                self._copy(m, f"{grp}[1]." + p.name.split(".", 1)[1], p.name)
        if m in TRIP_MODELS:
            self.trip.violated_s.clear()

    def _arm(self, key: str | int, tms: float, now_s: float) -> None:
        if tms > 0:
            self.deadlines[key] = now_s + tms
        else:
            self.deadlines.pop(key, None)

    # ------------------------------------------------------------------ twin side
    def _revert(self, key: str | int) -> None:
        if isinstance(key, str):
            self._copy(704, f"{key}Ena", f"{key}EnaRvrt")
            for dst, src in FN_704[key]:
                self._copy(704, dst, src)
            return
        crv = int(self.get(key, "RvrtCtl" if key == 711 else "RvrtCrv") or 0)
        ok = crv == 1 or (crv > 1 and not curve_errors(
            lambda m, n: self.get(m, n), key, crv, can_absorb=self.spec.kind != "pv_inverter"))
        if ok:
            if crv > 1:
                self._adopt(key, crv)
        else:
            self.put_point(key, "Ena", 0)

    def tick(self, now_s: float) -> list[str]:
        """Expire reversion timers and the heartbeat watchdog; returns what reverted."""
        if not self.is_der:
            return []
        reverted: list[str] = []
        hb_lost = (self.last_hb_s is not None
                   and now_s - self.last_hb_s > self.spec.heartbeat_timeout_s)
        keys: list[str | int] = [*FN_704, 705, 706, 711, 712]
        for key in keys:
            deadline = self.deadlines.get(key)
            rem_model, rem_name = (704, f"{key}RvrtRem") if isinstance(key, str) else (key, "RvrtRem")
            if deadline is not None and deadline > now_s and not hb_lost:
                self.put_point(rem_model, rem_name, math.ceil(deadline - now_s))
                continue
            self.put_point(rem_model, rem_name, 0)
            if deadline is None and not hb_lost:
                continue
            self.deadlines.pop(key, None)
            self._revert(key)
            reverted.append(str(key))
        if hb_lost:
            self.last_hb_s = None
            self.put_point(715, "OpCtl", 1)
            if self.spec.kind == "battery":
                self.put_point(802, "SetOp", 1)
            reverted.append("heartbeat")
        if reverted:
            self._fleet = None
        self.hb_count = (self.hb_count + 1) & 0xFFFF
        self.put_point(715, "DERHb", self.hb_count)
        if self.spec.kind == "battery":
            self.put_point(802, "Hb", self.hb_count)
        return reverted

    def control(self) -> DERControl:
        """The 704 active-power controls in force (what the agents' books apply)."""
        s = self.spec
        if s.kind == "meter":
            return DERControl()
        rated = s.nameplate_w
        w_max = None
        if self.get(704, "WMaxLimPctEna") == 1:
            w_max = float(self.get(702, "WMax")) * float(self.get(704, "WMaxLimPct")) / 100.0
        w_set = None
        if self.get(704, "WSetEna") == 1:
            if self.get(704, "WSetMod") == 1:
                w_set = float(self.get(704, "WSet"))
            else:
                w_set = rated * float(self.get(704, "WSetPct")) / 100.0
        connected = self.get(715, "OpCtl") != 0
        if s.kind == "battery":
            connected = connected and self.get(802, "SetOp") != 2
        return DERControl(w_max_w=w_max, w_set_w=w_set, connected=connected)

    def fleet(self) -> tuple[DerFleet, str]:
        """The 1547 functions in force as a one-device fleet (cached until a write)."""
        absorbing = self.last_w < 0
        if self._fleet is None:
            try:
                fn, mode = der_functions(lambda m, n: self.get(m, n),
                                         can_absorb=self.spec.kind != "pv_inverter", absorbing=absorbing)
            except DerFunctionError as exc:  # e.g. 702 ratings lowered under an adopted curve
                _log.warning("hil: unit %d: functions off (%s)", self.spec.unit_id, exc)
                fn, mode = der_functions(lambda m, n: 0 if n.endswith("Ena") else self.get(m, n),
                                         can_absorb=self.spec.kind != "pv_inverter", absorbing=absorbing)
            self._fleet = (DerFleet.from_functions([fn]), mode)
        return self._fleet

    def step_der(self, *, available_w: float, v: float, hz: float, soc: float | None,
                 now_s: float, dt_s: float) -> StepResult:
        """What the inverter delivers this step from its own dispatch ``available_w``."""
        s = self.spec
        if soc is not None:
            self.soc = float(soc)
        ctl = self.control()
        if not ctl.connected:
            return StepResult(0.0, 0.0, "", False)
        w, _ = ctl.apply(available_w=available_w, exact_set_point=s.kind == "battery")
        w = min(w, float(self.get(702, "WMax")) if s.kind != "battery"
                else float(self.get(702, "WDisChaRteMax")))
        w = max(w, -float(self.get(702, "WChaRteMax") or 0.0))
        if s.kind == "battery":
            max_charge, max_discharge = self.battery_limits_w()
            w = max(-max_charge, min(w, max_discharge))
        if (w < 0) != (self.last_w < 0) and self.get(704, "PFWAbsEna") == 1:
            self._fleet = None  # constant PF: PFWAbs while absorbing, PFWInj while injecting
        fleet, mode = self.fleet()
        return evaluate(lambda m, n: self.get(m, n), self.trip, fleet, mode=mode, w_in=w, v=v, hz=hz,
                        now_s=now_s, dt_s=dt_s, w_prev=self.last_w)

    def measure(self, m: Measurement, *, dt_s: float) -> None:
        """Put one step's measurement into the image (integrating energies over ``dt_s``)."""
        s, r = self.spec, self.regs
        w, var, v = float(m.w), float(m.var), float(m.v)
        va = math.hypot(w, var)
        pf = (math.copysign(abs(w) / va, w) if va > 0 else 1.0)  # sign of active power (IEC)
        amps = va / v if v > 0 else 0.0  # sum over the three phases
        hours = max(dt_s, 0.0) / 3600.0
        if s.kind == "meter":
            self.energy_abs_wh += max(w, 0.0) * hours
            self.energy_inj_wh += max(-w, 0.0) * hours
            pf_m = abs(w) / va if va > 0 else 1.0
            for name, val in (("A", amps), ("PhV", v), ("PPV", v * math.sqrt(3)), ("Hz", m.hz),
                              ("W", w), ("VA", va), ("VAR", var), ("PF", pf_m),
                              ("TotWhImp", self.energy_abs_wh), ("TotWhExp", self.energy_inj_wh)):
                self._put(r, 213, name, val)
            for ph in ("A", "B", "C"):
                for name, val in ((f"Aph{ph}", amps / 3), (f"PhVph{ph}", v), (f"Wph{ph}", w / 3),
                                  (f"VAph{ph}", va / 3), (f"VARph{ph}", var / 3), (f"PFph{ph}", pf_m)):
                    self._put(r, 213, name, val)
            for name in ("PPVphAB", "PPVphBC", "PPVphCA"):
                self._put(r, 213, name, v * math.sqrt(3))
            self.last_w = w
            return
        self.energy_inj_wh += max(w, 0.0) * hours
        self.energy_abs_wh += max(-w, 0.0) * hours
        self.varh_inj += max(var, 0.0) * hours
        self.varh_abs += max(-var, 0.0) * hours
        avail = m.available_w
        throttled = avail is not None and abs(w) < abs(avail) - 1.0
        running = abs(w) > 0.5
        kind, _, by = m.state.partition(":")
        # a trip is a FAULT (with its 701 Alrm bit) until 703 lets the device re-enter;
        # momentary cessation STANDBY (still connected); the enter-service delay STARTING
        inv_st = ({"tripped": 6, "starting": 2, "ceased": 7}.get(kind, 0) if kind or not m.in_service
                  else (4 if throttled else 3) if running else 7)
        put = self._put
        put(r, 701, "Alrm", 1 << TRIP_ALARM_BIT[int(by)] if kind == "tripped" else 0)
        ll = v * math.sqrt(3)
        for name, val in (("St", 1 if m.in_service else 0), ("InvSt", inv_st),
                          ("ConnSt", 1 if m.in_service else 0), ("W", w), ("VA", va), ("Var", var),
                          ("PF", pf), ("A", amps), ("LNV", v), ("LLV", ll), ("Hz", m.hz),
                          ("TotWhInj", self.energy_inj_wh), ("TotWhAbs", self.energy_abs_wh),
                          ("TotVarhInj", self.varh_inj), ("TotVarhAbs", self.varh_abs)):
            put(r, 701, name, val)
        for ph, vv in (("1", "VL1L2"), ("2", "VL2L3"), ("3", "VL3L1")):
            for name, val in ((f"WL{ph}", w / 3), (f"VAL{ph}", va / 3), (f"VarL{ph}", var / 3),
                              (f"PFL{ph}", pf), (f"AL{ph}", amps / 3), (f"VL{ph}", v), (vv, ll)):
                put(r, 701, name, val)
        thr = 0.0
        if avail and abs(avail) > 0:
            thr = max(0.0, 100.0 * (1.0 - abs(w) / abs(avail)))
        put(r, 701, "ThrotPct", min(round(thr), 100))
        dc_w = w / 0.97 if w >= 0 else w * 0.97  # DC side of a 97 % efficient inverter
        self.dc_wh_inj += max(dc_w, 0.0) * hours
        self.dc_wh_abs += max(-dc_w, 0.0) * hours
        dc_v = float(self.get(714, "Prt[1].DCV"))
        for pre in ("", "Prt[1]."):
            for name, val in (("DCA", dc_w / dc_v), ("DCW", dc_w), ("DCWhInj", self.dc_wh_inj),
                              ("DCWhAbs", self.dc_wh_abs)):
                put(r, 714, pre + name, val)
        if s.kind == "battery":
            if m.soc is not None:
                self.soc = float(m.soc)
            elif s.capacity_wh > 0:  # the power of the step before held over dt_s
                self.soc = min(1.0, max(0.0, self.soc - self.last_w * hours / s.capacity_wh))
            st = 3 if w > 0.5 else 4 if w < -0.5 else 6
            if self.soc >= s.soc_max - 1e-6 and w <= 0.5:
                st = 5
            elif self.soc <= s.soc_min + 1e-6 and w >= -0.5:
                st = 2
            for name, val in (("SoC", 100.0 * self.soc), ("W", w), ("A", w / DC_V_NOM),
                              ("ChaSt", st), ("State", 3 if m.in_service else 1)):
                put(r, 802, name, val)
            put(r, 713, "SoC", 100.0 * self.soc)
            put(r, 713, "WHAvail", max(self.soc - s.soc_min, 0.0) * s.capacity_wh)
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
