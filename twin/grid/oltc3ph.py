"""On-load tap changer of a feeder transformer on the three-phase engine (``grid.oltc`` with
``grid.phases: 3``).

The changer is **gang-operated**: one tap for the three phases of the transformer (a
three-phase unit has one tap changer; per-phase taps need single-phase regulators, which
OpenDSS decks bring as their own RegControls, :mod:`twin.grid.regcontrol3ph`). It regulates
the LV terminal's phase-to-ground voltage of one phase (``control_phase`` a, b or c) or the
highest / lowest of the three (``max`` / ``min``), as OpenDSS's ``RegControl`` ``PTphase``
(1..3, MAX, MIN) does.

:func:`gang_regulator` builds it as a :class:`twin.grid.regcontrol3ph.Regulator3ph` on any
transformer element of a :class:`twin.grid.feeder3ph.Feeder3ph` (an OpenDSS RegControl with
``vreg = v_set_pu * 120``, ``band = band_pu * 120``, ``ptratio`` = the winding's
phase-to-ground base / 120, no line-drop compensation), so a snapshot settles it with
OpenDSS's static control loop (:class:`twin.grid.controlled_pf3ph.ControlledPowerFlow3ph`,
``regulate=True``: to convergence, same taps and voltages as OpenDSS). :func:`oltc_from_pandapower`
does it for a pandapower trafo row (tap side, step, neutral and range from the net; the tap
scales the tap side's rows and columns of the element's admittance, which is exactly what
pandapower's three-phase model does for ``tap_side`` hv and lv) and returns, besides the
regulator, the :class:`twin.grid.tap_control.TapChanger` that runs it **step by step** in time
series with the balanced engine's semantics (band, ``delay_s`` accumulated over consecutive
out-of-band steps, :meth:`twin.grid.tap_control.TapController.step`), on the control voltage
the three-phase solve gives (:func:`control_voltage_pu`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from twin.grid.feeder3ph import Feeder3ph
from twin.grid.regcontrol3ph import PT_MAX, PT_MIN, Regulator3ph, control_voltage_v
from twin.grid.tap_control import TapChanger, TapChangerError, oltc_from_trafo

__all__ = ["ControlPhase", "control_voltage_pu", "gang_regulator", "oltc_from_pandapower"]

ControlPhase = Literal["a", "b", "c", "max", "min"]
_PT = {"a": 0, "b": 1, "c": 2, "max": PT_MAX, "min": PT_MIN}
_V_BASE = 120.0  # OpenDSS's regulator voltage base (V)


def gang_regulator(feeder: Feeder3ph, *, elem: int, tap_terminal: int, monitored_terminal: int,
                   v_set_pu: float, band_pu: float, delay_s: float, control_phase: ControlPhase,
                   min_tap_pu: float, max_tap_pu: float, n_taps: int, tap0_pu: float,
                   max_tap_change: int = 16, name: str = "oltc") -> Regulator3ph:
    """A gang-operated changer on element ``elem`` (terminals 0-based) as an OpenDSS
    RegControl (see the module docstring); raises :class:`twin.grid.regcontrol3ph.RegulatorError`
    for a band narrower than one tap step."""
    if control_phase not in _PT:
        raise TapChangerError([(f"{name}.control_phase", f"must be one of {list(_PT)}, got {control_phase!r}")])
    a, b = int(feeder.elem_ptr[elem]), int(feeder.elem_ptr[elem + 1])
    nodes, term = feeder.elem_nodes[a:b], feeder.elem_terminal[a:b]
    mon = np.flatnonzero(term == monitored_terminal)[:3]
    tap = np.flatnonzero(term == tap_terminal)
    if mon.size != 3 or tap.size < 3 or (nodes[mon] < 0).any():
        raise TapChangerError([(f"{name}.trafo", f"element {feeder.elem_names[elem]!r} has no three-phase "
                                                 f"terminals {tap_terminal} and {monitored_terminal}")])
    pt_node = nodes[mon].astype(np.int64)
    vb = feeder.node_vbase_kv[pt_node].astype(float)
    w_base_v = float(vb[0]) * 1e3
    return Regulator3ph(
        name=name, elem=elem, tap_conds=(a + tap).astype(np.int64), pt_node=pt_node,
        pt_ref_node=np.full(3, -1, dtype=np.int64), ct_cond=(a + mon).astype(np.int64), v_base_kv=vb,
        i_base_ka=feeder.sn_mva / vb, pt_phase=_PT[control_phase], vreg_v=v_set_pu * _V_BASE,
        band_v=band_pu * _V_BASE, pt_ratio=w_base_v / _V_BASE, ct_primary_a=1.0, r_v=0.0, x_v=0.0,
        delay_s=delay_s, max_tap_change=max_tap_change, winding_v_base_v=w_base_v,
        reverse_sign=tap_terminal != monitored_terminal, min_tap_pu=min_tap_pu, max_tap_pu=max_tap_pu,
        n_taps=n_taps, tap0_pu=tap0_pu)


def oltc_from_pandapower(feeder: Feeder3ph, net: Any, row: int, *, v_set_pu: float = 1.0,
                         band_pu: float | None = None, delay_s: float = 30.0,
                         control_phase: ControlPhase = "a", path: str = "grid.oltc") -> tuple[Regulator3ph, TapChanger, int]:
    """The changer of ``net.trafo`` row ``row`` on ``feeder`` (imported from ``net`` by
    :meth:`Feeder3ph.from_pandapower`): its regulator, its time-series
    :class:`TapChanger` (pandapower tap positions) and the offset ``tap position - tap
    number`` (the regulator numbers taps from the middle of the range, as OpenDSS).
    Settings problems raise :class:`TapChangerError` with field paths under ``path``."""
    ch = oltc_from_trafo(net, row, v_set_pu=v_set_pu, band_pu=band_pu, delay_s=delay_s, path=path)
    t = net.trafo.iloc[row]
    key = f"trafo.{net.trafo.index[row]}"
    if key not in feeder.elem_names:
        raise TapChangerError([(f"{path}.trafo", f"trafo {net.trafo.index[row]} is not in service in the feeder")])
    n_taps = ch.tap_max - ch.tap_min
    if n_taps <= 0 or n_taps % 2:
        raise TapChangerError([(path, f"trafo {net.trafo.index[row]} has {n_taps} tap steps ({ch.tap_min}.."
                                      f"{ch.tap_max}); the three-phase changer needs an even number > 0 "
                                      "(OpenDSS numbers taps from the middle of the range)")])
    step = float(t["tap_step_percent"]) / 100.0
    neutral = float(t["tap_neutral"]) if math.isfinite(float(t["tap_neutral"])) else 0.0
    pos0 = float(t["tap_pos"]) if math.isfinite(float(t["tap_pos"])) else neutral
    hv = str(t["tap_side"]) == "hv"
    reg = gang_regulator(
        feeder, elem=feeder.elem_names.index(key), tap_terminal=0 if hv else 1, monitored_terminal=1,
        v_set_pu=ch.v_set_pu, band_pu=ch.band_pu, delay_s=ch.delay_s, control_phase=control_phase,
        min_tap_pu=1.0 + (ch.tap_min - neutral) * step, max_tap_pu=1.0 + (ch.tap_max - neutral) * step,
        n_taps=n_taps, tap0_pu=1.0 + (pos0 - neutral) * step, name=path)
    return reg, ch, (ch.tap_min + ch.tap_max) // 2


def control_voltage_pu(reg: Regulator3ph, v_node: NDArray[np.complex128]) -> NDArray[np.float64]:
    """(B,) the voltage the changer regulates (pu of its winding's base) from per-unit node
    voltages ``v_node`` (B, n_node)."""
    i0 = np.zeros((v_node.shape[0], 1, len(reg.ct_cond)), dtype=complex)  # no line-drop compensation
    return np.asarray(control_voltage_v([reg], np.nan_to_num(v_node), i0)[:, 0] * reg.pt_ratio
                      / reg.winding_v_base_v)
