"""Static points, 1547 defaults and write ranges of the SunSpec DER models of one device.

:func:`fill_defaults` writes the nameplate (702 ratings), the scale factors, and the IEEE
1547-2018 Category B defaults (frequencies scaled to 50 Hz) of models 702-715 and 802 into a
device's register image, and :func:`writable_rules` says which points a client may write and
in what range (engineering units, after scale factors). Curves are checked as a whole when
adopted (:mod:`twin.hil.der_behaviour`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twin.hil.sunspec_map import GROUP_COUNTS

__all__ = ["HZ_NOM", "MAX_RVRT_S", "PF_MIN", "V_NOM", "Writable", "fill_defaults", "sf_for"]

V_NOM = 230.0
HZ_NOM = 50.0
PF_MIN = 0.8  # nameplate PFOvrExtRtg / PFUndExtRtg
MAX_RVRT_S = 86_400  # longest accepted reversion time
DC_V_NOM = 400.0  # battery / inverter DC bus, for 714 and 802


@dataclass(frozen=True)
class Writable:
    """What a client may write into one point: a range (engineering units) or symbols."""

    lo: float = 0.0
    hi: float = 0.0
    what: str = ""
    allowed: frozenset[int] | None = None  # for enums: the symbols the twin implements


def sf_for(max_value: float, raw_max: int) -> int:
    """Smallest scale factor (>= -3) so that ``max_value`` fits in ``raw_max``."""
    sf = -3
    while max_value / 10.0**sf > raw_max and sf < 9:
        sf += 1
    return sf


#: (V % of VNom, seconds) must-trip points, IEEE 1547-2018 Category II defaults
_LV_TRIP = ((45.0, 0.16), (70.0, 2.0))
_HV_TRIP = ((120.0, 0.16), (110.0, 2.0))
#: (Hz, seconds): 1547's 56.5/58.5/61.2/62.0 Hz scaled to 50 Hz
_LF_TRIP = ((47.08, 0.16), (48.75, 300.0))
_HF_TRIP = ((51.67, 0.16), (51.0, 300.0))

Put = Callable[[int, str, Any], None]


def fill_defaults(put: Put, *, kind: str, rated_w: float, capacity_wh: float, w_sf: int,
                  soc: tuple[float, float]) -> dict[tuple[int, str], Writable]:
    """Fill the image through ``put(model, name, value)``; return the writable points."""
    w: dict[tuple[int, str], Writable] = {}
    val: Any
    lo: float
    hi: float
    x: Any
    inject = kind != "ev_charger"
    absorb = kind != "pv_inverter"
    q_max = rated_w * math.tan(math.acos(PF_MIN))
    ena = frozenset({0, 1})

    def rw(model: int, name: str, value: Any, lo: float = 0.0, hi: float = 0.0, what: str = "",
           allowed: frozenset[int] | None = None) -> None:
        put(model, name, value)
        w[(model, name)] = Writable(lo, hi, what, allowed)

    # --- 702 nameplate (read-only) and settings (RW, within the ratings)
    for name, val in (("W_SF", w_sf), ("PF_SF", -3), ("VA_SF", w_sf), ("Var_SF", w_sf), ("V_SF", -1),
                      ("A_SF", sf_for(1.2 * rated_w / (0.9 * V_NOM), 32767)), ("S_SF", 0)):
        put(702, name, val)
    ratings = {"WMaxRtg": rated_w, "VAMaxRtg": rated_w, "VarMaxInjRtg": q_max, "VarMaxAbsRtg": q_max,
               "WChaRteMaxRtg": rated_w if absorb else 0.0,
               "WDisChaRteMaxRtg": rated_w if kind == "battery" else 0.0,
               "VNomRtg": V_NOM, "VMaxRtg": 1.15 * V_NOM, "VMinRtg": 0.85 * V_NOM,
               "AMaxRtg": rated_w / V_NOM, "PFOvrExtRtg": PF_MIN, "PFUndExtRtg": PF_MIN}
    for name, val in ratings.items():
        put(702, name, val)
    put(702, "NorOpCatRtg", 1)  # Category B
    put(702, "AbnOpCatRtg", 1)  # Category II
    put(702, "CtrlModes", sum(1 << b for b in (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13)))
    for name in ("WMax", "VAMax", "VarMaxInj", "VarMaxAbs", "WChaRteMax", "WDisChaRteMax"):
        rtg = ratings[name.replace("Max", "MaxRtg") if name in ("WMax", "VAMax") else name + "Rtg"]
        rw(702, name, rtg, 0.0, rtg, f"0..{name}Rtg")
    rw(702, "VNom", V_NOM, 0.85 * V_NOM, 1.15 * V_NOM, "VMinRtg..VMaxRtg")
    rw(702, "VMax", 1.1 * V_NOM, V_NOM, 1.15 * V_NOM, "VNom..VMaxRtg")
    rw(702, "VMin", 0.88 * V_NOM, 0.85 * V_NOM, V_NOM, "VMinRtg..VNom")
    rw(702, "PFOvrExt", PF_MIN, PF_MIN, 1.0, "PFOvrExtRtg..1")
    rw(702, "PFUndExt", PF_MIN, PF_MIN, 1.0, "PFUndExtRtg..1")

    # --- 703 enter service
    put(703, "V_SF", -2)
    put(703, "Hz_SF", -2)
    rw(703, "ES", 1, allowed=ena)
    rw(703, "ESVHi", 105.0, 100.0, 115.0, "% of VNom")
    rw(703, "ESVLo", 91.7, 80.0, 100.0, "% of VNom")
    rw(703, "ESHzHi", 50.1, 50.0, 52.0, "Hz")
    rw(703, "ESHzLo", 49.5, 47.0, 50.0, "Hz")
    rw(703, "ESDlyTms", 300, 0, 600, "seconds")
    rw(703, "ESRndTms", 0, 0, 1000, "seconds")
    rw(703, "ESRmpTms", 300, 0, 1000, "seconds")
    put(703, "ESDlyRemTms", 0)

    # --- 704 (constant PF, limit W, set W, constant var, ramps, anti-islanding)
    for name, val in (("PF_SF", -3), ("WMaxLimPct_SF", -1), ("WSet_SF", w_sf), ("WSetPct_SF", -1),
                      ("VarSet_SF", w_sf), ("VarSetPct_SF", -1)):
        put(704, name, val)
    w_lo, w_hi = (-rated_w if absorb else 0.0), (rated_w if inject else 0.0)
    pct_lo, pct_hi = (-100.0 if absorb else 0.0), (100.0 if inject else 0.0)
    for fn in ("PFWInj", "PFWAbs", "WMaxLimPct", "WSet", "VarSet"):
        rw(704, f"{fn}Ena", 0, allowed=ena)
        rw(704, f"{fn}EnaRvrt", 0, allowed=ena)
        rw(704, f"{fn}RvrtTms", 0, 0, MAX_RVRT_S, "seconds")
        put(704, f"{fn}RvrtRem", 0)
    for grp in ("PFWInj", "PFWInjRvrt", "PFWAbs", "PFWAbsRvrt"):
        rw(704, f"{grp}.PF", 1.0, PF_MIN, 1.0, "PFOvrExtRtg..1")
        rw(704, f"{grp}.Ext", 0 if grp.startswith("PFWInj") else 1, allowed=ena)
    for name in ("WMaxLimPct", "WMaxLimPctRvrt"):
        rw(704, name, 100.0, 0.0, 100.0, "% of WMax")
    rw(704, "WSetMod", 1, allowed=ena)
    for name in ("WSet", "WSetRvrt"):
        rw(704, name, 0, w_lo, w_hi, "WMaxRtg / WChaRteMaxRtg")
    for name in ("WSetPct", "WSetPctRvrt"):
        rw(704, name, 0, pct_lo, pct_hi, "% of WMax")
    rw(704, "VarSetMod", 4, allowed=frozenset({1, 4}))  # VAR_MAX_PCT, VARS
    rw(704, "VarSetPri", 1, allowed=ena)
    for name in ("VarSet", "VarSetRvrt"):
        rw(704, name, 0, -q_max, q_max, "VarMaxInjRtg / VarMaxAbsRtg")
    for name in ("VarSetPct", "VarSetPctRvrt"):
        rw(704, name, 0, -100.0, 100.0, "% of VarMax")
    rw(704, "WRmp", 100, 1, 10_000, "% of WMax per second")
    rw(704, "WRmpRef", 1, allowed=frozenset({1}))
    rw(704, "VarRmp", 100, 1, 10_000, "% of VarMax per second")
    rw(704, "AntiIslEna", 1, allowed=ena)

    # --- curve models 705 volt-var, 706 volt-watt, 712 watt-var; 711 droop
    curves = {
        705: ((92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)),
        706: ((106.0, 100.0), (110.0, 0.0 if absorb else 20.0)),
        712: ((20.0, 0.0), (50.0, 0.0), (100.0, -44.0)),
    }
    x_name = {705: "V", 706: "V", 712: "W"}
    y_name = {705: "Var", 706: "W", 712: "Var"}
    x_range = {705: (50.0, 150.0, "% of VNom"), 706: (100.0, 150.0, "% of VNom"),
               712: (pct_lo, pct_hi, "% of WMax")}
    y_range = {705: (-100.0, 100.0, "% of VarMax"), 706: (pct_lo, 100.0, "% of WMax"),
               712: (-100.0, 100.0, "% of VarMax")}
    for m, pts in curves.items():
        counts = GROUP_COUNTS[m]
        put(m, "V_SF" if m != 712 else "W_SF", -2 if m != 712 else 0)
        put(m, "DeptRef_SF", -2 if m != 712 else 0)
        if m != 712:
            put(m, "RspTms_SF", 0)
        put(m, "NCrv", counts["NCrv"])
        put(m, "NPt", counts["NPt"])
        put(m, "AdptCrvRslt", 1)
        rw(m, "Ena", 0, allowed=ena)
        rw(m, "AdptCrvReq", 0, 0, counts["NCrv"], "curve index")
        rw(m, "RvrtTms", 0, 0, MAX_RVRT_S, "seconds")
        put(m, "RvrtRem", 0)
        rw(m, "RvrtCrv", 0, 0, counts["NCrv"], "curve index (0: disable)")
        for c in range(1, counts["NCrv"] + 1):
            pre = f"Crv[{c}]."
            put(m, pre + "ReadOnly", 1 if c == 1 else 0)
            ro = c == 1  # curve 1 is the active curve: changed only by adoption
            dept = {705: 1, 706: 0, 712: 1}[m]
            for name, val, rule in (
                ("ActPt", len(pts), Writable(1, counts["NPt"], "points")),
                ("DeptRef", dept, Writable(allowed=frozenset({dept}))),
                ("Pri", 1, Writable(allowed=ena)),
                ("VRef", 100.0, Writable(80.0, 120.0, "% of VNom")),
                ("VRefAutoEna", 0, Writable(allowed=frozenset({0}))),
                ("VRefAutoTms", 0, Writable(0, 65534, "seconds")),
                ("RspTms", 5 if m == 705 else 10, Writable(0, 90, "seconds")),
            ):
                if not _has(m, name):
                    continue
                put(m, pre + name, val)
                if not ro:
                    w[(m, pre + name)] = rule
            if m == 705:
                put(m, pre + "VRefAuto", 100.0)
            for i in range(1, counts["NPt"] + 1):
                x, y = pts[min(i, len(pts)) - 1]
                lo, hi, what = x_range[m]
                put(m, f"{pre}Pt[{i}].{x_name[m]}", x)
                put(m, f"{pre}Pt[{i}].{y_name[m]}", y)
                if not ro:
                    w[(m, f"{pre}Pt[{i}].{x_name[m]}")] = Writable(lo, hi, what)
                    ylo, yhi, ywhat = y_range[m]
                    w[(m, f"{pre}Pt[{i}].{y_name[m]}")] = Writable(ylo, yhi, ywhat)
    n_ctl = GROUP_COUNTS[711]["NCtl"]
    for name, val in (("Db_SF", -3), ("K_SF", -3), ("RspTms_SF", 0), ("NCtl", n_ctl),
                      ("AdptCtlRslt", 1), ("RvrtRem", 0)):
        put(711, name, val)
    rw(711, "Ena", 0, allowed=ena)
    rw(711, "AdptCtlReq", 0, 0, n_ctl, "control index")
    rw(711, "RvrtTms", 0, 0, MAX_RVRT_S, "seconds")
    rw(711, "RvrtCtl", 0, 0, n_ctl, "control index (0: disable)")
    for c in range(1, n_ctl + 1):
        pre = f"Ctl[{c}]."
        put(711, pre + "ReadOnly", 1 if c == 1 else 0)
        for name, val, rule in (("DbOf", 0.036, Writable(0.0, 1.0, "Hz")),
                                ("DbUf", 0.036, Writable(0.0, 1.0, "Hz")),
                                ("KOf", 0.05, Writable(0.01, 0.1, "per unit")),
                                ("KUf", 0.05, Writable(0.01, 0.1, "per unit")),
                                ("RspTms", 5, Writable(0, 90, "seconds")),
                                ("PMin", -100 if absorb else 0, Writable(pct_lo, 0.0, "% of WMax"))):
            put(711, pre + name, val)
            if c > 1:
                w[(711, pre + name)] = rule

    # --- 707-710 trip curves (must trip, momentary cessation acted on; may trip: ride through)
    trips = {707: ("V", _LV_TRIP, (0.0, 100.0, "% of VNom")),
             708: ("V", _HV_TRIP, (100.0, 150.0, "% of VNom")),
             709: ("Hz", _LF_TRIP, (40.0, HZ_NOM, "Hz")),
             710: ("Hz", _HF_TRIP, (HZ_NOM, 60.0, "Hz"))}
    for m, (x, pts, (lo, hi, what)) in trips.items():
        counts = GROUP_COUNTS[m]
        put(m, "V_SF" if x == "V" else "Hz_SF", -2)
        put(m, "Tms_SF", -2)
        put(m, "NPt", counts["NPt"])
        put(m, "NCrvSet", counts["NCrvSet"])
        put(m, "AdptCrvRslt", 1)
        rw(m, "Ena", 1, allowed=ena)
        rw(m, "AdptCrvReq", 0, 0, counts["NCrvSet"], "curve set index")
        for c in range(1, counts["NCrvSet"] + 1):
            put(m, f"Crv[{c}].ReadOnly", 1 if c == 1 else 0)
            for grp in ("MustTrip", "MayTrip", "MomCess"):
                pre = f"Crv[{c}].{grp}."
                put(m, pre + "ActPt", len(pts))
                if c > 1:
                    w[(m, pre + "ActPt")] = Writable(1, counts["NPt"], "points")
                for i in range(1, counts["NPt"] + 1):
                    xv, tv = pts[min(i, len(pts)) - 1]
                    put(m, f"{pre}Pt[{i}].{x}", xv)
                    put(m, f"{pre}Pt[{i}].Tms", tv)
                    if c > 1:
                        w[(m, f"{pre}Pt[{i}].{x}")] = Writable(lo, hi, what)
                        w[(m, f"{pre}Pt[{i}].Tms")] = Writable(0.0, 1000.0, "seconds")

    # --- 713 storage capacity, 714 DC measurements, 715 DER control
    if kind == "battery":
        put(713, "WH_SF", sf_for(capacity_wh, 65534))
        put(713, "Pct_SF", -1)
        put(713, "WHRtg", capacity_wh)
        put(713, "SoH", 100.0)
        put(713, "Sta", 0)
    for name, val in (("DCA_SF", -2), ("DCV_SF", -1), ("DCW_SF", w_sf), ("DCWH_SF", 0), ("Tmp_SF", -1),
                      ("NPrt", 1), ("PrtAlrms", 0), ("Prt[1].PrtTyp", {"pv_inverter": 0, "battery": 1}.get(kind, 2)),
                      ("Prt[1].ID", 1), ("Prt[1].IDStr", "dc1"), ("Prt[1].DCV", DC_V_NOM), ("Prt[1].DCSta", 1),
                      ("Prt[1].DCAlrm", 0)):
        put(714, name, val)
    put(715, "LocRemCtl", 0)
    put(715, "DERHb", 0)
    rw(715, "ControllerHb", 0, 0, 2**32 - 2, "counter")
    rw(715, "AlarmReset", 0, 0, 65534, "any value")
    rw(715, "OpCtl", 1, allowed=frozenset({0, 1}))  # STOP, START

    # --- 802 battery base model
    if kind == "battery":
        for name, val in (("AHRtg_SF", sf_for(capacity_wh / DC_V_NOM, 65534)),
                          ("WHRtg_SF", sf_for(capacity_wh, 65534)),
                          ("WChaDisChaMax_SF", sf_for(rated_w, 65534)), ("SoC_SF", -1),
                          ("V_SF", -1), ("CellV_SF", -3), ("A_SF", -1), ("AMax_SF", -1),
                          ("W_SF", w_sf)):
            put(802, name, val)
        for name, val in (("AHRtg", capacity_wh / DC_V_NOM), ("WHRtg", capacity_wh),
                          ("WChaRteMax", rated_w), ("WDisChaRteMax", rated_w),
                          ("SoCMax", 100 * soc[1]), ("SoCMin", 100 * soc[0]), ("LocRemCtl", 0),
                          ("Typ", 4), ("State", 3), ("Evt1", 0), ("Evt2", 0), ("EvtVnd1", 0),
                          ("EvtVnd2", 0), ("V", DC_V_NOM), ("SetInvState", 3), ("Hb", 0)):
            put(802, name, val)
        rw(802, "SetOp", 1, allowed=frozenset({1, 2}))
        rw(802, "CtrlHb", 0, 0, 65534, "counter")
        rw(802, "AlmRst", 0, 0, 65534, "any value")
    return w


def _has(model: int, name: str) -> bool:
    """Whether a curve of ``model`` carries point ``name`` (705 has VRef, 706 not, ...)."""
    return {
        705: True,
        706: name in ("ActPt", "DeptRef", "RspTms"),
        712: name in ("ActPt", "DeptRef", "Pri"),
    }[model]
