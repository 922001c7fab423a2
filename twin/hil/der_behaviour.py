"""What a HIL inverter does with its SunSpec settings: 1547 functions, trips, enter service.

Pure (no sockets): functions of a point reader ``get(model, name)`` (engineering values of
one register image). The grid-support functions themselves are
:mod:`twin.grid.der_functions` (the twin's one control layer): this module turns the active
SunSpec curves and 704 settings into a :class:`~twin.grid.der_functions.DerFunctions`,
checks a curve as a whole before it is adopted (the function's own rules: monotone, inside
the ratings, the number of points 1547 asks for), and evaluates one HIL step.

Conventions: curve points in % of ``VNom`` (702), var in % of ``VarMaxInj``/``VarMaxAbs``,
watts in % of ``WMax``; the twin's functions in per unit of ``VAMax`` / ``WMax``.
Reactive-power modes are mutually exclusive in IEEE 1547; when a client enables several,
the first of constant PF (704 ``PFWInj``/``PFWAbs``), constant var (704 ``VarSet``),
volt-var (705), watt-var (712) is in force.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.grid.der_functions import (
    ConstantPowerFactor,
    ConstantVar,
    DerFleet,
    DerFunctionError,
    DerFunctions,
    FrequencyWatt,
    VoltVar,
    VoltWatt,
    WattVar,
)
from twin.hil.der_defaults import HZ_NOM

__all__ = ["CURVE_MODELS", "FN_704", "TRIP_ALARM_BIT", "TRIP_MODELS", "Getter", "StepResult", "TripState",
           "curve_errors", "der_functions", "evaluate"]

Getter = Callable[[int, str], Any]

#: models whose curve n is adopted into curve 1 by ``AdptCrvReq`` (711: ``AdptCtlReq``)
CURVE_MODELS = (705, 706, 711, 712, 707, 708, 709, 710)
TRIP_MODELS = (707, 708, 709, 710)
#: 704 functions with a reversion timer: the points that revert and where they revert from
FN_704: dict[str, tuple[tuple[str, str], ...]] = {
    "PFWInj": (("PFWInj.PF", "PFWInjRvrt.PF"), ("PFWInj.Ext", "PFWInjRvrt.Ext")),
    "PFWAbs": (("PFWAbs.PF", "PFWAbsRvrt.PF"), ("PFWAbs.Ext", "PFWAbsRvrt.Ext")),
    "WMaxLimPct": (("WMaxLimPct", "WMaxLimPctRvrt"),),
    "WSet": (("WSet", "WSetRvrt"), ("WSetPct", "WSetPctRvrt")),
    "VarSet": (("VarSet", "VarSetRvrt"), ("VarSetPct", "VarSetPctRvrt")),
}
_NPT = {705: 4, 706: 2, 712: 3}


def _group(model: int) -> str:
    return "Ctl" if model == 711 else "Crv"


def _pts(get: Getter, model: int, c: int, x: str, y: str, sub: str = "") -> tuple[list[float], list[float]]:
    pre = f"{_group(model)}[{c}].{sub}"
    n = int(get(model, pre + "ActPt") or 0)
    xs = [float(get(model, f"{pre}Pt[{i}].{x}")) for i in range(1, n + 1)]
    ys = [float(get(model, f"{pre}Pt[{i}].{y}")) for i in range(1, n + 1)]
    return xs, ys


def _ratings(get: Getter) -> tuple[float, float, float, float]:
    """(VAMax, WMax, VarMaxInj, VarMaxAbs) in W / var, at least 1."""
    return tuple(max(float(get(702, n) or 0.0), 1.0)  # type: ignore[return-value]
                 for n in ("VAMax", "WMax", "VarMaxInj", "VarMaxAbs"))


def _q_pu(get: Getter, pct: float) -> float:
    va, _, inj, ab = _ratings(get)
    return pct / 100.0 * (inj if pct >= 0 else ab) / va


def _curve_function(get: Getter, model: int, c: int, *, can_absorb: bool) -> Any:
    """The der_functions object of curve ``c`` of ``model`` (raises DerFunctionError)."""
    path = f"{model}.{_group(model)}[{c}]"
    if model in _NPT:
        n = int(get(model, f"Crv[{c}].ActPt") or 0)
        if n != _NPT[model]:
            raise DerFunctionError([(f"{path}.ActPt", f"{n} points; IEEE 1547 asks for {_NPT[model]}")])
    rsp = float(get(model, f"{_group(model)}[{c}].RspTms") or 0.0) if model in (705, 706, 711) else 10.0
    if model == 705:
        v, q = _pts(get, model, c, "V", "Var")
        f: Any = VoltVar(v_pu=tuple(x / 100 for x in v),  # type: ignore[arg-type]
                         q_pu=tuple(_q_pu(get, y) for y in q),  # type: ignore[arg-type]
                         v_ref_pu=float(get(model, f"Crv[{c}].VRef")) / 100, response_time_s=rsp)
    elif model == 706:
        v, p = _pts(get, model, c, "V", "W")
        f = VoltWatt(v_pu=tuple(x / 100 for x in v), p_pu=tuple(y / 100 for y in p),  # type: ignore[arg-type]
                     response_time_s=rsp)
    elif model == 712:
        p, q = _pts(get, model, c, "W", "Var")
        f = WattVar(p_pu=tuple(x / 100 for x in p), q_pu=tuple(_q_pu(get, y) for y in q))  # type: ignore[arg-type]
    elif model == 711:
        pre = f"Ctl[{c}]."
        f = FrequencyWatt(f_nom_hz=HZ_NOM, db_of_hz=float(get(711, pre + "DbOf")),
                          db_uf_hz=float(get(711, pre + "DbUf")), k_of=float(get(711, pre + "KOf")),
                          k_uf=float(get(711, pre + "KUf")), response_time_s=rsp)
    else:
        raise ValueError(model)
    va, _, inj, ab = _ratings(get)
    errs = (f.errors(path, q_max_pu=min(1.0, max(inj, ab) / va)) if model in (705, 712)
            else f.errors(path, p_min_pu=-1.0 if can_absorb else 0.0) if model == 706
            else f.errors(path))
    if errs:
        raise DerFunctionError(errs)
    return f


def _trip_errors(get: Getter, model: int, c: int) -> list[str]:
    x = "V" if model in (707, 708) else "Hz"
    out = []
    for grp in ("MustTrip", "MayTrip", "MomCess"):
        xs, ts = _pts(get, model, c, x, "Tms", grp + ".")
        path = f"{model}.Crv[{c}].{grp}"
        if not xs:
            out.append(f"{path}.ActPt: a trip curve needs at least 1 point")
            continue
        rising = model in (707, 709)  # under-V/Hz: higher threshold, longer clearing time
        if any((b <= a) if rising else (b >= a) for a, b in itertools.pairwise(xs)):
            out.append(f"{path}: {x} must be strictly {'increasing' if rising else 'decreasing'} "
                       f"along the curve, got {xs}")
        if any(b < a for a, b in itertools.pairwise(ts)):
            out.append(f"{path}: clearing times must not decrease along the curve, got {ts}")
    # the must-trip region lies beyond the may-trip region (1547: ride through, may trip, must trip)
    must, _ = _pts(get, model, c, x, "Tms", "MustTrip.")
    may, _ = _pts(get, model, c, x, "Tms", "MayTrip.")
    if must and may:
        under = model in (707, 709)
        m_edge, y_edge = (max(must), max(may)) if under else (min(must), min(may))
        unit = "% of VNom" if x == "V" else "Hz"
        if (m_edge > y_edge) if under else (m_edge < y_edge):
            out.append(f"{model}.Crv[{c}].MustTrip: must trip from {m_edge:g} {unit} starts inside "
                       f"the ride-through region (may trip from {y_edge:g} {unit}); it must lie beyond it")
    return out


def curve_errors(get: Getter, model: int, c: int, *, can_absorb: bool) -> list[str]:
    """Every reason curve (or control, curve set) ``c`` of ``model`` cannot be adopted."""
    if model in TRIP_MODELS:
        return _trip_errors(get, model, c)
    try:
        _curve_function(get, model, c, can_absorb=can_absorb)
    except DerFunctionError as exc:
        return [f"{p}: {m}" for p, m in exc.errors]
    return []


def der_functions(get: Getter, *, can_absorb: bool, absorbing: bool) -> tuple[DerFunctions, str]:
    """The functions in force (curve 1 of each enabled model) and the reactive mode's name."""
    va, wmax, inj, ab = _ratings(get)
    q_max_pu = min(1.0, max(inj, ab) / va)
    reactive: Any = None
    mode = ""
    priority = "reactive"
    pf_fn = "PFWAbs" if absorbing else "PFWInj"
    if get(704, f"{pf_fn}Ena") == 1:
        ext = get(704, f"{pf_fn}.Ext")
        reactive = ConstantPowerFactor(pf=float(get(704, f"{pf_fn}.PF")),
                                       excitation="injecting" if ext == 0 else "absorbing", response_time_s=0)
        mode = "constant_pf"
    elif get(704, "VarSetEna") == 1:
        if get(704, "VarSetMod") == 4:
            q = float(get(704, "VarSet")) / va
        else:
            q = _q_pu(get, float(get(704, "VarSetPct")))
        reactive = ConstantVar(q_pu=max(-q_max_pu, min(q_max_pu, q)), response_time_s=0)
        priority = "reactive" if get(704, "VarSetPri") == 1 else "active"
        mode = "constant_var"
    elif get(705, "Ena") == 1:
        reactive = _curve_function(get, 705, 1, can_absorb=can_absorb)
        priority = "reactive" if get(705, "Crv[1].Pri") == 1 else "active"
        mode = "volt_var"
    elif get(712, "Ena") == 1:
        reactive = _curve_function(get, 712, 1, can_absorb=can_absorb)
        priority = "reactive" if get(712, "Crv[1].Pri") == 1 else "active"
        mode = "watt_var"
    vw = _curve_function(get, 706, 1, can_absorb=can_absorb) if get(706, "Ena") == 1 else None
    fw = _curve_function(get, 711, 1, can_absorb=can_absorb) if get(711, "Ena") == 1 else None
    fn = DerFunctions(s_rated_mva=va / 1e6, p_rated_mw=min(wmax, va) / 1e6, reactive=reactive,
                      volt_watt=vw, freq_watt=fw, q_max_pu=q_max_pu,
                      p_min_pu=-1.0 if can_absorb else 0.0, priority=priority)  # type: ignore[arg-type]
    return fn, mode


@dataclass
class TripState:
    """Trip-curve timers, service state and the enter-service delay and ramp of one device.

    Per 707-710 curve 1: beyond a ``MustTrip`` point for its ``Tms`` the device trips (out
    of service until 703 lets it re-enter); beyond a ``MomCess`` point for its ``Tms`` it
    ceases to energize but stays connected, and resumes at the first step back inside;
    beyond a ``MayTrip`` point (1547: ride through or trip) it rides through, reported in
    ``may_trip``.
    """

    in_service: bool = True
    #: seconds each curve point has been violated, by (model, group, point index)
    violated_s: dict[tuple[int, str, int], float] = field(default_factory=dict)
    es_ok_s: float = 0.0  # seconds the enter-service window has held while out of service
    ramp_from_s: float | None = None  # twin time the enter-service ramp started
    tripped_by: str = ""
    ceased_by: str = ""  # momentary cessation in force (the model), this step
    may_trip: str = ""  # riding through a may-trip region (the model), this step
    ceased_prev: bool = False  # momentary cessation in force at the previous step


#: 701 ``Alrm`` bit of a trip by each model (AC_UNDER_VOLT, AC_OVER_VOLT, UNDER_/OVER_FREQUENCY)
TRIP_ALARM_BIT = {707: 11, 708: 10, 709: 9, 710: 8}


def _update_trips(get: Getter, st: TripState, *, v_pct: float, hz: float, dt_s: float) -> str:
    """Advance the trip-curve timers; the model that must trip (``''``: none).

    Also sets ``st.ceased_by`` (momentary cessation) and ``st.may_trip`` for this step."""
    tripped, st.ceased_by, st.may_trip = "", "", ""
    for m in TRIP_MODELS:
        if get(m, "Ena") != 1:
            continue
        x = v_pct if m in (707, 708) else hz
        name = "V" if m in (707, 708) else "Hz"
        for grp in ("MustTrip", "MomCess", "MayTrip"):
            xs, ts = _pts(get, m, 1, name, "Tms", grp + ".")
            hit = False
            for i, (thr, tms) in enumerate(zip(xs, ts, strict=True)):
                bad = x < thr if m in (707, 709) else x > thr
                key = (m, grp, i)
                st.violated_s[key] = st.violated_s.get(key, 0.0) + dt_s if bad else 0.0
                hit = hit or (bad and st.violated_s[key] >= tms)
            if not hit:
                continue
            if grp == "MustTrip":
                tripped = tripped or f"{m}"
            elif grp == "MomCess":
                st.ceased_by = st.ceased_by or f"{m}"
            else:
                st.may_trip = st.may_trip or f"{m}"
    return tripped


@dataclass(frozen=True)
class StepResult:
    w: float
    var: float
    mode: str
    in_service: bool
    es_delay_rem_s: float = 0.0
    #: why the device is not energizing: "" (it is, or it has nothing to deliver),
    #: "tripped:<model>", "ceased:<model>" (momentary cessation), "permit_off", "starting"
    state: str = ""


def evaluate(get: Getter, st: TripState, fleet: DerFleet, *, mode: str, w_in: float, v: float,
             hz: float, now_s: float, dt_s: float, w_prev: float) -> StepResult:
    """One HIL step of an inverter after its 704 active-power controls gave ``w_in``."""
    v_nom = float(get(702, "VNom") or 230.0)
    v_pct = 100.0 * v / v_nom
    tripped = _update_trips(get, st, v_pct=v_pct, hz=hz, dt_s=dt_s)
    # back from momentary cessation: restore output at once (1547 6.4.2.7), not at WRmp
    resuming, st.ceased_prev = st.ceased_prev and not st.ceased_by, bool(st.ceased_by)
    if tripped and st.in_service:
        st.in_service, st.tripped_by, st.es_ok_s, st.ramp_from_s = False, tripped, 0.0, None
    permit = get(703, "ES") == 1
    if not permit:  # permit service off: cease to energize
        st.in_service, st.es_ok_s, st.tripped_by = False, 0.0, ""
    delay = float(get(703, "ESDlyTms") or 0.0)
    if not st.in_service:
        window = (float(get(703, "ESVLo")) <= v_pct <= float(get(703, "ESVHi"))
                  and float(get(703, "ESHzLo")) <= hz <= float(get(703, "ESHzHi")))
        st.es_ok_s = st.es_ok_s + dt_s if (permit and window and not tripped) else 0.0
        if permit and window and not tripped and st.es_ok_s >= delay:
            st.in_service, st.ramp_from_s, st.tripped_by = True, now_s, ""
        else:
            why = ("permit_off" if not permit else f"tripped:{st.tripped_by}"
                   if (st.tripped_by and not st.es_ok_s) else "starting")
            return StepResult(0.0, 0.0, mode, False, max(0.0, delay - st.es_ok_s), why)
    if st.ceased_by:  # momentary cessation: connected, not energizing, no re-entry delay
        return StepResult(0.0, 0.0, mode, True, 0.0, f"ceased:{st.ceased_by}")
    vm = np.array([[v / v_nom]])
    p = fleet.p_limit_mw(vm, np.array([[w_in / 1e6]]), hz)
    wmax = float(get(702, "WMax") or 0.0)
    if st.ramp_from_s is not None:  # enter-service ramp of the active-power limit
        rmp = float(get(703, "ESRmpTms") or 0.0)
        frac = 1.0 if rmp <= 0 else (now_s - st.ramp_from_s) / rmp
        if frac >= 1.0:
            st.ramp_from_s = None
        else:
            p = np.minimum(p, max(frac, 0.0) * wmax / 1e6)
    if dt_s > 0 and not resuming:  # 704 WRmp: increase of active power, % of WMax per second
        up = float(get(704, "WRmp") or 0.0) / 100.0 * wmax * dt_s
        if up > 0 and p[0, 0] * 1e6 > w_prev + up and w_prev >= 0:
            p = np.array([[(w_prev + up) / 1e6]])
    q = fleet.q_target_mvar(vm, p)
    if mode == "constant_pf":  # keep the power factor: scale both into VAMax
        s_max = float(fleet.s_rated_mva[0])
        s = math.hypot(float(p[0, 0]), float(q[0, 0]))
        if s > s_max > 0:
            p, q = p * (s_max / s), q * (s_max / s)
    else:
        p, q = fleet.limit_apparent(p, q)
    return StepResult(float(p[0, 0]) * 1e6, float(q[0, 0]) * 1e6, mode, True)
