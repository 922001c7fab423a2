"""Switched capacitors (OpenDSS ``CapControl``) on the three-phase engine.

A :class:`CapControl3ph` is one CapControl of a :class:`twin.grid.feeder3ph.Feeder3ph`: the
capacitor element it switches (its primitive admittance with 0..``n_steps`` steps in
service, read from OpenDSS's own ``Yprim``), the element terminal it monitors and OpenDSS's
settings (``ctype`` current / voltage / kvar / pf, ``on_value`` / ``off_value``,
``pt_ratio``, ``ct_ratio``, ``pt_phase`` / ``ct_phase``, ``on_delay_s``, ``off_delay_s``,
``dead_time_s``, the voltage override ``v_override`` / ``v_min`` / ``v_max``).
:func:`capcontrols_from_opendss` reads them from a deck. Its state is the number of steps in
service, ``0..n_steps``; it rides with the regulators' tap numbers (a control's "tap"), so
every path that carries taps (a snapshot, the time series from one step to the next, the DSO
following the grid) carries capacitor states too (``tap_pu``: the fraction of steps in).

:func:`sample` is OpenDSS's ``TCapControlObj.Sample``, vectorized over lanes and capacitors:
closed (some step in) above ``off_value`` (voltage: below for current / kvar) a step goes out,
below ``on_value`` with steps left one more goes in; a new pending change is armed with its
delay (``on_delay_s``; a close within ``dead_time_s`` of the last opening waits out the dead
time plus ``on_delay_s``), a change that no longer applies is disarmed. :func:`act` is
``DoPendingAction``: one step in or out. Monitored quantities: ``voltage``: the PT phase's
terminal voltage (line to line for a delta capacitor, or the mean / max / min over phases)
over ``pt_ratio``; ``current``: the CT phase's current over ``ct_ratio``; ``kvar``: the
reactive power into the monitored terminal; ``pf``: its power factor on OpenDSS's 0..2 scale
(leading above 1); ``time``: the time of day in hours (:func:`hour_of_day`, OpenDSS's
``NormalizeToTOD`` of the solution time) against ``on_value`` / ``off_value`` (``ONsetting`` /
``OFFsetting``, hours of day; an off time earlier than the on time is the next day's): an open
bank closes inside the window (from the on time to the off time, or to midnight when the off
time is the next day's), a closed bank opens outside it (before the on time or from the off
time; from the off time to the on time when the off time is the next day's), as DSS C-API's
``Sample``. A time control needs the solution time (``time_s`` of the solve).

A deck capacitor with no step in service is taken as open (OpenDSS keeps its terminal closed
until its control opens it: that differs at the first sample of a voltage override or a pf
control only). Regulators and capacitors share one control queue with OpenDSS's static-mode
clock (:class:`twin.grid.controlled_pf3ph.ControlledPowerFlow3ph`): the actions due first
act, and the clock moves to them (dead times count on it).

In a time series the static loop runs at every step from the previous step's states: the
step is taken to be longer than the delays and the dead time (15 min against OpenDSS's
default 15 s and 300 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.grid.feeder3ph import Feeder3ph, FeederImportError

__all__ = ["CapControl3ph", "CapControlError", "CapState", "act", "capcontrols_from_opendss", "hour_of_day", "measure",
           "sample"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ComplexArray = NDArray[np.complex128]

PH_AVG, PH_MAX, PH_MIN = -1, -2, -3
_TYPES = {0: "current", 1: "voltage", 2: "kvar", 3: "time", 4: "pf"}
NONE, OPEN, CLOSE = 0, -1, 1


class CapControlError(ValueError):
    """A CapControl that cannot be modelled or is set up wrong; names the control and field."""


@dataclass(frozen=True, eq=False)
class CapControl3ph:
    """One CapControl on a :class:`Feeder3ph` (see the module docstring).

    ``elem``: the capacitor's element index, ``y_steps``: its per-unit admittance with
    0..``n_steps`` steps in; ``mon_elem``: the monitored element, ``mon_conds`` (n_cond,) its
    conductors (rows of ``feeder.elem_nodes``) on the monitored terminal, ``ct_conds``
    (n_ph,): the conductors the CT reads (OpenDSS reads terminal 1 for one named phase);
    ``n_phases``: the capacitor's phases (OpenDSS's control's phases).
    """

    name: str
    elem: int
    y_steps: tuple[ComplexArray, ...]
    step0: int
    ctype: str
    on_value: float
    off_value: float
    pt_ratio: float
    ct_ratio: float
    pt_phase: int
    ct_phase: int
    on_delay_s: float
    off_delay_s: float
    dead_time_s: float
    v_override: bool
    v_min: float
    v_max: float
    mon_elem: int
    mon_conds: IntArray
    ct_conds: IntArray
    mon_n_phases: int
    n_phases: int
    cap_delta: bool
    total_kvar: float
    pct_min_kvar: float

    def __post_init__(self) -> None:
        path = f"capcontrols[{self.name!r}]"
        if self.ctype not in _TYPES.values():
            raise CapControlError(f"{path}.ctype: must be one of {sorted(_TYPES.values())}, got {self.ctype!r}")
        if len(self.y_steps) != self.n_steps + 1 or self.n_steps < 1:
            raise CapControlError(f"{path}.y_steps: one admittance per state 0..n_steps needed")
        if not (self.pt_ratio > 0 and self.ct_ratio > 0):
            raise CapControlError(f"{path}.pt_ratio: PT and CT ratios must be > 0, got {self.pt_ratio}, "
                                  f"{self.ct_ratio}")
        if min(self.on_delay_s, self.off_delay_s, self.dead_time_s) < 0:
            raise CapControlError(f"{path}.on_delay_s: delays and dead time must be >= 0")
        if self.ctype == "time":
            for fld, hour in (("on_value", self.on_value), ("off_value", self.off_value)):
                if not 0.0 <= hour <= 24.0:
                    raise CapControlError(f"{path}.{fld}: a time control's setting is an hour of day in "
                                          f"0..24, got {hour}")
        if self.ctype == "voltage" and not self.on_value < self.off_value:
            raise CapControlError(f"{path}.on_value: a voltage control must switch on below its off setting "
                                  f"({self.on_value} >= {self.off_value} V would hunt)")
        if self.ctype in ("current", "kvar") and not self.on_value > self.off_value:
            raise CapControlError(f"{path}.on_value: a {self.ctype} control must switch on above its off setting "
                                  f"({self.on_value} <= {self.off_value} would hunt)")

    # the regulator-like view: a capacitor's "tap" is its number of steps in service
    @property
    def n_steps(self) -> int:
        return len(self.y_steps) - 1

    @property
    def tap_range(self) -> tuple[int, int]:
        return 0, self.n_steps

    @property
    def tap0_pu(self) -> float:
        return self.step0 / self.n_steps

    @property
    def delay_s(self) -> float:
        return self.on_delay_s

    def tap_pu(self, tap: IntArray | int) -> FloatArray:
        """Fraction of the steps in service."""
        return np.asarray(np.asarray(tap) / self.n_steps, dtype=float)

    def tap_number(self, tap_pu: float) -> int:
        return round(tap_pu * self.n_steps)

    def elem_y_at(self, steps: int) -> ComplexArray:
        """The capacitor element's per-unit admittance with ``steps`` steps in."""
        return self.y_steps[int(steps)]


@dataclass(eq=False)
class CapState:
    """Per lane and capacitor: pending change (OPEN/CLOSE/NONE), armed, due time, last opening."""

    pending: IntArray  # (B, C)
    armed: BoolArray
    due: FloatArray
    last_open: FloatArray

    @classmethod
    def start(cls, n_b: int, caps: Sequence[CapControl3ph]) -> CapState:
        c = len(caps)
        dead = np.array([g.dead_time_s for g in caps], dtype=float)
        return cls(pending=np.zeros((n_b, c), dtype=np.int64), armed=np.zeros((n_b, c), dtype=bool),
                   due=np.full((n_b, c), np.inf), last_open=np.broadcast_to(-dead, (n_b, c)).copy())


def hour_of_day(time_s: ArrayLike) -> FloatArray:
    """OpenDSS's ``NormalizeToTOD`` of a solution time (seconds since hour 0 of the run, i.e.
    ``3600 * intHour + t``): the hour of day in (0, 24], 24:00 itself staying 24."""
    t = np.asarray(time_s, dtype=np.float64)
    h = np.floor(t / 3600.0)
    sec = t - 3600.0 * h
    hod = np.where(h > 24, h - np.floor((h - 1) / 24) * 24, h)
    out = hod + sec / 3600.0
    return np.asarray(np.where(out - 24.0 > 1e-12, out - 24.0, out))


def _time_window(g: CapControl3ph, tod: FloatArray) -> tuple[BoolArray, BoolArray]:
    """A time control's (close, open) conditions at hours of day ``tod`` (DSS C-API ``Sample``)."""
    if g.off_value > g.on_value:
        inside = (tod >= g.on_value) & (tod < g.off_value)
        return inside, ~inside
    return (tod >= g.on_value) & (tod < 24.0), (tod >= g.off_value) & (tod < g.on_value)


def _phase_pick(x: FloatArray, ph: int, n: int) -> FloatArray:
    """(B,) of (B, k): phase ``ph`` or the mean / max / min of the first ``n``."""
    if ph == PH_AVG:
        return np.asarray(x[:, :n].mean(axis=1))
    if ph == PH_MAX:
        return np.asarray(x[:, :n].max(axis=1))
    if ph == PH_MIN:
        return np.asarray(x[:, :n].min(axis=1))
    return np.asarray(x[:, ph])


def measure(feeder: Feeder3ph, caps: Sequence[CapControl3ph], v_node: ComplexArray, *,
            elem_on: NDArray[np.bool_] | None = None) -> dict[str, FloatArray]:
    """(B, C) each control's monitored quantities from the per-unit node voltages: ``v``
    (volts over ``pt_ratio``), ``i`` (amps over ``ct_ratio``), ``q_kvar`` and ``pf``.
    Monitored elements are never switched or tapped (checked on reading), so their
    admittances are the feeder's; one out of service (``elem_on``) carries no current."""
    n_b, n_c = v_node.shape[0], len(caps)
    vg = np.concatenate([np.nan_to_num(v_node), np.zeros((n_b, 1), dtype=complex)], axis=1)
    out = {k: np.zeros((n_b, n_c)) for k in ("v", "i", "q_kvar", "pf")}
    for c, g in enumerate(caps):
        a, b = int(feeder.elem_ptr[g.mon_elem]), int(feeder.elem_ptr[g.mon_elem + 1])
        nodes = feeder.elem_nodes[a:b]
        cols = np.where(nodes >= 0, nodes, feeder.n_node)
        vb = np.where(nodes >= 0, feeder.node_vbase_kv[np.maximum(nodes, 0)], 1.0) * 1e3  # volts
        v_el = vg[:, cols] * vb  # (B, n) volts
        rows = g.mon_conds - a
        v_t = v_el[:, rows]
        n = g.mon_n_phases
        if g.ctype == "voltage" or g.v_override:
            if g.pt_phase >= 0 and g.cap_delta:
                nxt = (g.pt_phase + 1) % g.n_phases
                v = np.abs(v_t[:, g.pt_phase] - v_t[:, nxt])
            else:
                v = _phase_pick(np.abs(v_t), g.pt_phase, n)
            out["v"][:, c] = v / g.pt_ratio
        if g.ctype in ("current", "kvar", "pf"):
            y = feeder.elem_y[g.mon_elem]
            i_pu = vg[:, cols] @ y.T  # (B, n) per unit
            if elem_on is not None and not elem_on[g.mon_elem]:
                i_pu = np.zeros_like(i_pu)
            i_a = i_pu * (feeder.sn_mva * 1e6 / vb)  # amps
            if g.ctype == "current":
                ct = np.abs(i_a[:, g.ct_conds - a])
                out["i"][:, c] = _phase_pick(ct, g.ct_phase if g.ct_phase < 0 else 0, g.n_phases) / g.ct_ratio
            else:
                s = (v_t * np.conj(i_a[:, rows])).sum(axis=1)  # VA into the terminal
                out["q_kvar"][:, c] = s.imag * 1e-3
                mag = np.abs(s)
                pf = np.where(mag > 0, np.abs(s.real) / np.where(mag > 0, mag, 1.0), 1.0)
                out["pf"][:, c] = np.where(s.imag < 0, 2.0 - pf, pf)
    return out


def sample(caps: Sequence[CapControl3ph], steps: IntArray, state: CapState, meas: dict[str, FloatArray],
           clock: FloatArray, lanes: IntArray) -> None:
    """OpenDSS ``CapControl.Sample`` on ``lanes`` (in place); ``steps`` (k, C) the lanes'
    steps in service, ``meas`` the lanes' :func:`measure`, ``clock`` (k,) their control time."""
    n_l = lanes.size
    for c, g in enumerate(caps):
        s = steps[:, c]
        closed = s > 0
        more = s < g.n_steps
        pend = state.pending[lanes, c].copy()
        switch = np.zeros(n_l, dtype=bool)
        if g.v_override and g.ctype != "voltage":
            v = meas["v"][:, c]
            lo, hi = ~closed & (v < g.v_min), closed & (v > g.v_max)
            pend[lo], pend[hi] = CLOSE, OPEN
            switch = lo | hi
        if g.ctype == "voltage":
            x = meas["v"][:, c]
            on, off = x < g.on_value, x > g.off_value
        elif g.ctype == "current":
            x = meas["i"][:, c]
            on, off = x > g.on_value, x < g.off_value
        elif g.ctype == "kvar":
            x = meas["q_kvar"][:, c]
            on, off = x > g.on_value, x < g.off_value
        elif g.ctype == "time":  # the hour of day in or out of the window
            on, off = _time_window(g, meas["tod_h"][:, c])
        else:  # pf: on below PFON with enough lagging kvar, off above PFOFF
            pf, q = meas["pf"][:, c], meas["q_kvar"][:, c]
            on_open = (pf < g.on_value) & (q > g.total_kvar * g.pct_min_kvar * 0.01)
            on_more = (pf < g.on_value) & (q > g.total_kvar / g.n_steps * 0.5)
            on, off = np.where(closed, on_more, on_open), pf > g.off_value
        rest = ~switch
        # open: on -> close, else none; closed: off -> open, else (steps left) on -> close
        # (not on: pending unchanged, as OpenDSS), else none
        o = rest & ~closed
        pend[o & on] = CLOSE
        pend[o & ~on] = NONE
        k = rest & closed
        if g.ctype == "voltage":  # DSS C-API resets a closed voltage control's pending change first
            pend[k] = NONE
        pend[k & off] = OPEN
        pend[k & ~off & more & on] = CLOSE
        pend[k & ~off & ~more] = NONE
        switch = switch | (o & on) | (k & off) | (k & ~off & more & on)
        armed = state.armed[lanes, c]
        new = switch & ~armed
        since = clock - state.last_open[lanes, c]
        d_on = np.where(since < g.dead_time_s, np.maximum(g.on_delay_s, g.dead_time_s + g.on_delay_s - since),
                        g.on_delay_s)
        delay = np.where(pend == CLOSE, d_on, g.off_delay_s)
        due = state.due[lanes, c]
        due = np.where(new, clock + delay, due)
        armed = armed | new
        reset = armed & (pend == NONE)
        armed = armed & ~reset
        due = np.where(armed, due, np.inf)
        state.pending[lanes, c] = pend
        state.armed[lanes, c] = armed
        state.due[lanes, c] = due


def act(caps: Sequence[CapControl3ph], steps: IntArray, state: CapState, first: BoolArray, clock: FloatArray,
        lanes: IntArray) -> IntArray:
    """OpenDSS ``DoPendingAction`` of the controls in ``first`` (k, C) on ``lanes``: one step
    in (close) or out (open). Returns the new steps (k, C); disarms them (in place)."""
    new = steps.copy()
    for c, g in enumerate(caps):
        f = first[:, c]
        pend = state.pending[lanes, c]
        up = f & (pend == CLOSE)
        down = f & (pend == OPEN) & (steps[:, c] > 0)
        new[up, c] = np.minimum(steps[up, c] + 1, g.n_steps)
        new[down, c] = steps[down, c] - 1
        if g.n_steps == 1:  # OpenDSS notes the opening time of a one-step bank only
            lo = state.last_open[lanes, c]
            state.last_open[lanes, c] = np.where(down, clock, lo)
        state.armed[lanes, c] = state.armed[lanes, c] & ~f
        state.due[lanes, c] = np.where(f, np.inf, state.due[lanes, c])
    return new


# ---------------------------------------------------------------------- OpenDSS reader


def _phase_setting(s: str, where: str) -> int:
    s = s.strip().lower()
    named = {"avg": PH_AVG, "max": PH_MAX, "min": PH_MIN}
    if s in named:
        return named[s]
    try:
        return int(float(s)) - 1
    except ValueError:
        raise CapControlError(f"{where}: unknown phase {s!r}") from None


def capcontrols_from_opendss(feeder: Feeder3ph, path: str | Path, *, commands: Sequence[str] = (),
                             controlled_elems: Sequence[int] = ()) -> list[CapControl3ph]:
    """The CapControls of the deck at ``path`` (after ``commands``) on ``feeder`` (imported
    from the same deck and commands). ``controlled_elems``: elements whose admittance other
    controls change (regulated transformers), which a current / kvar / pf control may not
    monitor. Unsupported settings (a user model, a voltage-override bus)
    raise :class:`CapControlError` naming the control and setting. A time control's
    ``on_value`` / ``off_value`` are its ``ONsetting`` / ``OFFsetting`` hours."""
    from twin.grid._dss_import import _engine

    ctx = _engine()
    ctx.Text.Command = "clear"
    try:
        ctx.Text.Command = f'redirect "{Path(path).resolve()}"'
        for cmd in commands:
            ctx.Text.Command = cmd
        ckt = ctx.ActiveCircuit
        ckt.Solution.SolveNoControl()
    except Exception as exc:
        raise FeederImportError(f"OpenDSS could not compile {str(path)!r}: {exc}") from exc
    cc, caps = ckt.CapControls, ckt.Capacitors
    elem_index = {n.lower(): k for k, n in enumerate(feeder.elem_names)}
    raw: list[dict[str, Any]] = []
    i = cc.First
    while i:
        name = cc.Name
        where = f"CapControl.{name}"
        ckt.SetActiveElement(where)
        props = ckt.ActiveCktElement

        def prop(p: str, props: Any = props) -> str:
            return str(props.Properties(p).Val).strip()

        mode = int(cc.Mode)
        if mode not in _TYPES:
            raise CapControlError(f"{where}.type={prop('type')!r} is not modelled (current, voltage, kvar, time "
                                  "and pf are)")
        for p in ("UserModel", "VBus"):
            try:
                val = prop(p)
            except Exception:  # pragma: no cover - older engines lack the property
                continue
            if val:
                raise CapControlError(f"{where}.{p}={val!r} is not supported by the three-phase capacitor model")
        raw.append({"name": name, "cap": cc.Capacitor, "mon": cc.MonitoredObj, "term": int(cc.MonitoredTerm),
                    "ctype": _TYPES[mode], "on": float(cc.ONSetting), "off": float(cc.OFFSetting),
                    "pt": float(cc.PTratio), "ct": float(cc.CTratio), "don": float(cc.Delay),
                    "doff": float(cc.DelayOff), "dead": float(cc.DeadTime), "vo": bool(cc.UseVoltOverride),
                    "vmin": float(cc.Vmin), "vmax": float(cc.Vmax),
                    "ptph": _phase_setting(prop("PTPhase"), f"{where}.PTPhase"),
                    "ctph": _phase_setting(prop("CTPhase"), f"{where}.CTPhase"),
                    "pctmin": float(prop("pctMinkvar") or 50.0)})
        i = cc.Next
    for r in raw:  # OpenDSS's PF settings: -1..1, negative = leading (1..2 on its scale)
        if r["ctype"] == "pf":
            for fld, default in (("on", 0.95), ("off", 1.05)):
                r[fld] = (2.0 + r[fld] if r[fld] < 0 else r[fld]) if -1.0 <= r[fld] <= 1.0 else default
    out: list[CapControl3ph] = []
    switched = {f"capacitor.{r['cap']}".lower() for r in raw}
    for r in raw:
        where = f"CapControl.{r['name']}"
        key = f"capacitor.{r['cap']}".lower()
        if key not in elem_index:
            raise CapControlError(f"{where}.capacitor: {r['cap']!r} is not an element of the feeder")
        k = elem_index[key]
        caps.Name = r["cap"]
        n_steps = int(caps.NumSteps)
        states0 = [int(x) for x in caps.States]
        step0 = int(sum(states0))
        if states0 != [1] * step0 + [0] * (n_steps - step0):
            raise CapControlError(f"Capacitor.{r['cap']}.states={states0}: steps go in and out in order "
                                  "(the deck's steps in service must be the first ones)")
        total_kvar = float(caps.kvar)
        delta = bool(caps.IsDelta)
        a, b = int(feeder.elem_ptr[k]), int(feeder.elem_ptr[k + 1])
        nodes = feeder.elem_nodes[a:b]
        vb = np.where(nodes >= 0, feeder.node_vbase_kv[np.maximum(nodes, 0)], 1.0) * 1e3
        scale = np.outer(vb, vb) / (feeder.sn_mva * 1e6)
        ys = []
        for s in range(n_steps + 1):
            caps.Name = r["cap"]
            caps.States = [1] * s + [0] * (n_steps - s)
            ckt.Solution.SolveNoControl()
            ckt.SetActiveElement(key)
            raw_y = np.asarray(ckt.ActiveCktElement.Yprim, dtype=float)
            m = round(math.sqrt(raw_y.size // 2))
            y = (raw_y[0::2] + 1j * raw_y[1::2]).reshape(m, m)
            if y.shape != scale.shape:
                raise CapControlError(f"{where}: capacitor {r['cap']} has {m} conductors, the feeder {scale.shape[0]}")
            ys.append(y * scale)
        caps.Name = r["cap"]
        caps.States = states0
        ckt.SetActiveElement(key)
        n_ph = int(ckt.ActiveCktElement.NumPhases)
        mkey = r["mon"].lower()
        if mkey not in elem_index:
            raise CapControlError(f"{where}.element: {r['mon']!r} is not an element of the feeder")
        mk = elem_index[mkey]
        if r["ctype"] not in ("voltage", "time") and (mkey in switched or mk in set(controlled_elems)):
            raise CapControlError(f"{where}.element: a {r['ctype']} control monitoring {r['mon']!r}, whose "
                                  "admittance a control changes, is not supported (monitor a line)")
        ma, mb = int(feeder.elem_ptr[mk]), int(feeder.elem_ptr[mk + 1])
        term = feeder.elem_terminal[ma:mb]
        mon = ma + np.flatnonzero(term == r["term"] - 1)
        if mon.size == 0:
            raise CapControlError(f"{where}.terminal: {r['mon']} has no terminal {r['term']}")
        ckt.SetActiveElement(mkey)
        mon_ph = int(ckt.ActiveCktElement.NumPhases)
        for fld, ph in (("PTPhase", r["ptph"]), ("CTPhase", r["ctph"])):
            if ph >= n_ph:
                raise CapControlError(f"{where}.{fld}: phase {ph + 1} exceeds the capacitor's {n_ph} phases")
        # OpenDSS: a named CT phase is read on terminal 1 of the monitored element, AVG/MAX/MIN on its terminal
        ct_conds = (ma + np.flatnonzero(term == 0)[:n_ph]) if r["ctph"] >= 0 else mon[:n_ph]
        out.append(CapControl3ph(
            name=r["name"], elem=k, y_steps=tuple(ys), step0=step0, ctype=r["ctype"], on_value=r["on"],
            off_value=r["off"], pt_ratio=r["pt"], ct_ratio=r["ct"], pt_phase=r["ptph"], ct_phase=r["ctph"],
            on_delay_s=r["don"], off_delay_s=r["doff"], dead_time_s=r["dead"], v_override=r["vo"],
            v_min=r["vmin"], v_max=r["vmax"], mon_elem=mk, mon_conds=mon.astype(np.int64),
            ct_conds=ct_conds.astype(np.int64), mon_n_phases=mon_ph, n_phases=n_ph, cap_delta=delta,
            total_kvar=total_kvar, pct_min_kvar=r["pctmin"]))
    return out
