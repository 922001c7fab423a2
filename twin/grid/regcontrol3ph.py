"""Voltage regulators (OpenDSS ``RegControl``) on the three-phase engine.

A :class:`Regulator3ph` is one RegControl of a :class:`twin.grid.feeder3ph.Feeder3ph`: the
transformer element it moves, the winding whose tap it changes, the node pair whose voltage
its PT reads and the conductor its CT reads (line-drop compensation), with OpenDSS's own
settings (120 V base ``vreg_v`` / ``band_v``, ``pt_ratio``, ``ct_primary_a``, ``r_v`` /
``x_v``, ``delay_s``, ``max_tap_change``) and the tap range. :func:`regulators_from_opendss`
reads them from a deck (the deck's taps are the feeder's; any other tap is exact: a tap
``t`` on a winding scales that winding's rows and columns of the element's primitive
admittance by ``t0 / t``, checked against OpenDSS's own Yprim in the tests).

:func:`sample` and :func:`act` are OpenDSS's static control mode (``controlmode=static``,
the snapshot default), vectorized over lanes (B) and regulators (R):

* *sample*: the control voltage is the PT phase's winding voltage over ``pt_ratio`` plus
  ``(R + jX) I_ct / ct_primary`` (the CT current flowing into the terminal, i.e. minus the
  load current: line-drop compensation); out of band (``|vreg - v| > band / 2``) the
  pending change is ``round((vreg - v) pt_ratio / V_base / step)`` taps (negated when the
  tap winding is not the monitored one), and an idle regulator that can move that way is
  armed with its delay; back in band it is disarmed;
* *act*: the armed regulators with the shortest delay act (time does not advance in static
  mode, so delays only order the actions), each by 70 % of its pending change, at least one
  tap and at most ``max_tap_change``, within the tap range.

Solve, sample, act is repeated until no regulator is armed (:class:`twin.grid.controlled_pf3ph.
ControlledPowerFlow3ph`). In time series the same loop runs at every step from the previous
step's taps: quasi-static, i.e. the step is taken to be longer than the delays (a 15-minute
step against OpenDSS's default 15 s + 2 s per tap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from twin.grid.feeder3ph import Feeder3ph, FeederImportError

__all__ = ["PT_MAX", "PT_MIN", "Regulator3ph", "RegulatorError", "act", "regulators_from_opendss", "sample"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ComplexArray = NDArray[np.complex128]

PT_MAX = -1  # pt_phase: the highest phase voltage (OpenDSS ``PTphase=MAX``)
PT_MIN = -2


class RegulatorError(ValueError):
    """A regulator that cannot be modelled or is set up wrong; names the regulator and field."""


@dataclass(frozen=True, eq=False)
class Regulator3ph:
    """One RegControl on a :class:`Feeder3ph` (see the module docstring for the semantics).

    ``elem``: the transformer's element index; ``tap_conds``: its conductor indices (rows of
    ``feeder.elem_nodes``) on the tap winding's terminal; ``pt_node`` / ``pt_ref_node``
    (n_ph,): the nodes whose difference is each phase's winding voltage (-1: ground);
    ``ct_cond`` (n_ph,): the conductor whose current the CT reads; ``v_base_kv`` /
    ``i_base_ka`` (n_ph,): per-unit bases of those; ``pt_phase``: 0-based phase, or
    :data:`PT_MAX` / :data:`PT_MIN`; ``winding_v_base_v``: OpenDSS's ``BaseVoltage`` of the
    monitored winding; ``tap0_pu``: the tap in the feeder's admittances.
    """

    name: str
    elem: int
    tap_conds: IntArray
    pt_node: IntArray
    pt_ref_node: IntArray
    ct_cond: IntArray
    v_base_kv: FloatArray
    i_base_ka: FloatArray
    pt_phase: int
    vreg_v: float
    band_v: float
    pt_ratio: float
    ct_primary_a: float
    r_v: float
    x_v: float
    delay_s: float
    max_tap_change: int
    winding_v_base_v: float
    reverse_sign: bool
    min_tap_pu: float
    max_tap_pu: float
    n_taps: int
    tap0_pu: float

    def __post_init__(self) -> None:
        path = f"regulators[{self.name!r}]"
        if not self.n_taps > 0:
            raise RegulatorError(f"{path}.n_taps: must be > 0, got {self.n_taps}")
        if not self.max_tap_pu > self.min_tap_pu:
            raise RegulatorError(f"{path}.max_tap_pu: must exceed min_tap_pu ({self.min_tap_pu}), got {self.max_tap_pu}")
        if not (self.pt_ratio > 0 and self.winding_v_base_v > 0):
            raise RegulatorError(f"{path}.pt_ratio: must be > 0, got {self.pt_ratio}")
        step_v = self.step_pu * self.winding_v_base_v / self.pt_ratio
        if not self.band_v > step_v:
            raise RegulatorError(f"{path}.band_v: {self.band_v} V is narrower than one tap step ({step_v:.4g} V on "
                                 "the 120 V base): the regulator would hunt")

    @property
    def step_pu(self) -> float:
        """One tap step (OpenDSS ``TapIncrement``)."""
        return (self.max_tap_pu - self.min_tap_pu) / self.n_taps

    @property
    def tap_range(self) -> tuple[int, int]:
        """Lowest and highest tap number (OpenDSS ``TapNumber``: 0 at the range's middle)."""
        half = self.n_taps // 2
        return -half, self.n_taps - half

    def tap_pu(self, tap: IntArray | int) -> FloatArray:
        """Tap ratio of tap number ``tap``."""
        return np.asarray((self.max_tap_pu + self.min_tap_pu) / 2.0 + np.asarray(tap) * self.step_pu, dtype=float)

    def tap_number(self, tap_pu: float) -> int:
        """Nearest tap number of ratio ``tap_pu``."""
        return round((tap_pu - (self.max_tap_pu + self.min_tap_pu) / 2.0) / self.step_pu)


def scaled_elem_y(feeder: Feeder3ph, regulators: Sequence[Regulator3ph], taps: Sequence[int]) -> tuple[ComplexArray, ...]:
    """The feeder's element admittances with regulator ``r`` at tap number ``taps[r]`` (a
    switched capacitor, :class:`twin.grid.capcontrol3ph.CapControl3ph`: ``taps[r]`` steps in)."""
    ys = list(feeder.elem_y)
    for reg, tap in zip(regulators, taps, strict=True):
        if hasattr(reg, "elem_y_at"):
            ys[reg.elem] = reg.elem_y_at(int(tap))
            continue
        a = int(feeder.elem_ptr[reg.elem])
        d = np.ones(ys[reg.elem].shape[0])
        d[reg.tap_conds - a] = reg.tap0_pu / float(reg.tap_pu(tap))
        ys[reg.elem] = ys[reg.elem] * np.outer(d, d)
    return tuple(ys)


# ---------------------------------------------------------------------- control (vectorized)


@dataclass(eq=False)
class RegState:
    """Per lane and regulator: tap number, pending change (taps), armed, delay (queue)."""

    taps: IntArray  # (B, R)
    pending: FloatArray
    armed: BoolArray


def control_voltage_v(regulators: Sequence[Regulator3ph], v_node: ComplexArray,
                      i_cond: ComplexArray) -> FloatArray:
    """(B, R) OpenDSS's ``Vactual`` (120 V base) of each regulator from the per-unit node
    voltages ``v_node`` (B, n_node) and the regulators' CT conductor currents ``i_cond``
    (B, R, n_ph max) in per unit (current into the terminal)."""
    n_b = v_node.shape[0]
    out = np.empty((n_b, len(regulators)))
    vg = np.concatenate([v_node, np.zeros((n_b, 1), dtype=complex)], axis=1)
    for r, reg in enumerate(regulators):
        v_w = (vg[:, reg.pt_node] - vg[:, reg.pt_ref_node]) * (reg.v_base_kv * 1e3)  # volts (B, n_ph)
        if reg.pt_phase >= 0:
            ph = np.full(n_b, reg.pt_phase)
        else:
            mag = np.abs(v_w)
            ph = np.argmax(mag, axis=1) if reg.pt_phase == PT_MAX else np.argmin(mag, axis=1)
        rows = np.arange(n_b)
        v_c = v_w[rows, ph] / reg.pt_ratio
        if reg.r_v != 0.0 or reg.x_v != 0.0:
            i_a = i_cond[:, r, :len(reg.ct_cond)] * (reg.i_base_ka * 1e3)
            v_c = v_c + complex(reg.r_v, reg.x_v) * i_a[rows, ph] / reg.ct_primary_a
        out[:, r] = np.abs(v_c)
    return out


def sample(regulators: Sequence[Regulator3ph], state: RegState, v_actual: FloatArray, lanes: IntArray) -> None:
    """OpenDSS ``RegControl.Sample`` on ``lanes`` (in place)."""
    vreg = np.array([g.vreg_v for g in regulators])
    band = np.array([g.band_v for g in regulators])
    k = np.array([g.pt_ratio / g.winding_v_base_v / g.step_pu for g in regulators])
    sign = np.array([-1.0 if g.reverse_sign else 1.0 for g in regulators])
    lo = np.array([g.tap_range[0] for g in regulators])
    hi = np.array([g.tap_range[1] for g in regulators])
    need = np.abs(vreg - v_actual) > band / 2.0
    pend = sign * np.round((vreg - v_actual) * k)
    taps = state.taps[lanes]
    pending = np.where(need, pend, 0.0)
    can = ((pending > 0) & (taps < hi)) | ((pending < 0) & (taps > lo))
    armed = np.where(need, state.armed[lanes] | can, False)
    state.pending[lanes] = pending
    state.armed[lanes] = armed


def act(regulators: Sequence[Regulator3ph], state: RegState, lanes: IntArray,
        first: BoolArray | None = None) -> BoolArray:
    """OpenDSS's static queue on ``lanes``: the armed regulators with the shortest delay act
    (in place), or those in ``first`` (len(lanes), R) (the queue's nearest actions when other
    controls share it). Returns (len(lanes),) True where a tap moved."""
    delay = np.array([g.delay_s for g in regulators])
    max_ch = np.array([max(g.max_tap_change, 0) for g in regulators])
    lo = np.array([g.tap_range[0] for g in regulators])
    hi = np.array([g.tap_range[1] for g in regulators])
    armed = state.armed[lanes]
    t = np.where(armed, delay, np.inf)
    if first is None:
        first = armed & (t == t.min(axis=1, keepdims=True))
    pending = state.pending[lanes]
    n = np.minimum(np.maximum(np.trunc(0.7 * np.abs(pending)), 1.0), max_ch)
    step = np.where(first & (pending != 0), np.sign(pending) * n, 0.0).astype(np.int64)
    old = state.taps[lanes]
    new = np.clip(old + step, lo, hi)
    state.taps[lanes] = new
    state.pending[lanes] = np.where(first, 0.0, pending)
    state.armed[lanes] = armed & ~first
    return np.asarray((new != old).any(axis=1) | first.any(axis=1))


# ---------------------------------------------------------------------- OpenDSS reader


def regulators_from_opendss(feeder: Feeder3ph, path: str | Path, *,
                            commands: Sequence[str] = ()) -> list[Regulator3ph]:
    """The RegControls of the deck at ``path`` (after ``commands``) on ``feeder`` (imported
    from the same deck and commands). Unsupported settings (a remote ``bus=``, reverse
    operation, ``vlimit``, inverse time, Beckwith ``LDC_Z``) raise :class:`RegulatorError`
    naming the regulator and setting."""
    from twin.grid._dss_import import _engine

    ctx = _engine()
    ctx.Text.Command = "clear"
    try:
        ctx.Text.Command = f'redirect "{Path(path).resolve()}"'
        for cmd in commands:
            ctx.Text.Command = cmd
    except Exception as exc:
        raise FeederImportError(f"OpenDSS could not compile {str(path)!r}: {exc}") from exc
    ckt = ctx.ActiveCircuit
    rc, tr = ckt.RegControls, ckt.Transformers
    elem_index = {n.lower(): k for k, n in enumerate(feeder.elem_names)}
    out: list[Regulator3ph] = []
    i = rc.First
    while i:
        name = rc.Name
        where = f"RegControl.{name}"
        ckt.SetActiveElement(f"RegControl.{name}")
        props = ckt.ActiveCktElement

        def prop(p: str, props: Any = props) -> str:
            return str(props.Properties(p).Val).strip().lower()

        for p, bad in (("bus", lambda s: s != ""), ("reversible", lambda s: s.startswith(("y", "t"))),
                       ("vlimit", lambda s: float(s) > 0), ("inversetime", lambda s: s.startswith(("y", "t"))),
                       ("ldc_z", lambda s: float(s) > 0)):
            if bad(prop(p)):
                raise RegulatorError(f"{where}.{p}={prop(p)!r} is not supported by the three-phase regulator model")
        pt = prop("ptphase")
        pt_phase = PT_MAX if pt == "max" else PT_MIN if pt == "min" else int(float(pt)) - 1
        key = f"transformer.{rc.Transformer}".lower()
        if key not in elem_index:
            raise RegulatorError(f"{where}.transformer: {rc.Transformer!r} is not an element of the feeder")
        k = elem_index[key]
        wdg, tap_wdg = int(rc.Winding), int(float(prop("tapwinding") or rc.Winding))
        tr.Name = rc.Transformer
        ckt.SetActiveElement(key)
        elem = ckt.ActiveCktElement
        n_ph = int(elem.NumPhases)
        n_cond = int(elem.NumConductors)
        tr.Wdg = wdg
        kv, delta = float(tr.kV), bool(tr.IsDelta)
        v_base = kv * 1e3 if delta or n_ph == 1 else kv * 1e3 / math.sqrt(3.0)
        tr.Wdg = tap_wdg
        tap0 = float(tr.Tap)
        a, b = int(feeder.elem_ptr[k]), int(feeder.elem_ptr[k + 1])
        nodes = feeder.elem_nodes[a:b]
        term = feeder.elem_terminal[a:b]
        mon = np.flatnonzero(term == wdg - 1)
        if mon.size != n_cond:
            raise RegulatorError(f"{where}.winding: transformer {rc.Transformer} has no terminal {wdg}")
        pt_node = nodes[mon[:n_ph]]
        if delta:
            ref = nodes[mon[[(p + 1) % n_ph for p in range(n_ph)]]] if n_ph > 1 else nodes[mon[[1]]]
        else:
            ref = np.full(n_ph, nodes[mon[n_ph]] if n_cond > n_ph else -1)
        if (pt_node < 0).any():
            raise RegulatorError(f"{where}: the monitored winding of {rc.Transformer} has a grounded phase")
        cb = feeder.node_vbase_kv[pt_node]
        out.append(Regulator3ph(
            name=name, elem=k, tap_conds=(a + np.flatnonzero(term == tap_wdg - 1)).astype(np.int64),
            pt_node=pt_node.astype(np.int64), pt_ref_node=np.asarray(ref, dtype=np.int64),
            ct_cond=(a + mon[:n_ph]).astype(np.int64), v_base_kv=cb.astype(float),
            i_base_ka=(feeder.sn_mva / cb).astype(float), pt_phase=pt_phase,
            vreg_v=float(rc.ForwardVreg), band_v=float(rc.ForwardBand), pt_ratio=float(rc.PTratio),
            ct_primary_a=float(rc.CTPrimary), r_v=float(rc.ForwardR), x_v=float(rc.ForwardX),
            delay_s=float(rc.Delay), max_tap_change=int(rc.MaxTapChange), winding_v_base_v=v_base,
            reverse_sign=tap_wdg != wdg, min_tap_pu=float(tr.MinTap), max_tap_pu=float(tr.MaxTap),
            n_taps=int(tr.NumTaps), tap0_pu=tap0))
        i = rc.Next
    return out
