"""The RegControls of an OpenDSS deck, read with DSS-Python (the three-phase importer lists
them in ``Feeder3ph.ignored``): the first step of regulator control on the three-phase engine.

Each :class:`RegControlSettings` holds OpenDSS's own values (120 V base: ``vreg_v``,
``band_v``; line-drop compensation ``r_v`` / ``x_v`` in volts at ``ct_primary_a``; delays
in s) and the regulated transformer's tap range, plus :meth:`RegControlSettings.band_pu` /
:meth:`v_set_pu` on the regulated winding's base (``vreg * ptratio / (1000 * kV_ln)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twin.grid._dss_import import _engine

__all__ = ["RegControlSettings", "read_regcontrols"]


@dataclass(frozen=True, slots=True)
class RegControlSettings:
    name: str
    transformer: str
    winding: int
    vreg_v: float
    band_v: float
    pt_ratio: float
    ct_primary_a: float
    r_v: float
    x_v: float
    delay_s: float
    tap_delay_s: float
    max_tap_change: int
    tap: int  # OpenDSS TapNumber in the deck's current state
    n_taps: int
    min_tap_pu: float
    max_tap_pu: float
    winding_kv: float  # rated kV of the regulated winding (line-to-neutral for 1-phase)

    def v_set_pu(self) -> float:
        return self.vreg_v * self.pt_ratio / (1000.0 * self.winding_kv)

    def band_pu(self) -> float:
        return self.band_v * self.pt_ratio / (1000.0 * self.winding_kv)

    def tap_step_pu(self) -> float:
        return (self.max_tap_pu - self.min_tap_pu) / self.n_taps


def read_regcontrols(path: Path, *, commands: tuple[str, ...] = ()) -> list[RegControlSettings]:
    """Every RegControl of the deck at ``path`` (after ``commands``), in OpenDSS order."""
    ctx = _engine()
    ctx.Text.Command = "clear"
    ctx.Text.Command = f'redirect "{Path(path).resolve()}"'
    for cmd in commands:
        ctx.Text.Command = cmd
    ckt = ctx.ActiveCircuit
    rc, tr = ckt.RegControls, ckt.Transformers
    out = []
    i = rc.First
    while i:
        tr.Name = rc.Transformer
        tr.Wdg = rc.Winding
        out.append(RegControlSettings(
            name=rc.Name, transformer=rc.Transformer, winding=int(rc.Winding), vreg_v=float(rc.ForwardVreg),
            band_v=float(rc.ForwardBand), pt_ratio=float(rc.PTratio), ct_primary_a=float(rc.CTPrimary),
            r_v=float(rc.ForwardR), x_v=float(rc.ForwardX), delay_s=float(rc.Delay),
            tap_delay_s=float(rc.TapDelay), max_tap_change=int(rc.MaxTapChange), tap=int(rc.TapNumber),
            n_taps=int(tr.NumTaps), min_tap_pu=float(tr.MinTap), max_tap_pu=float(tr.MaxTap),
            winding_kv=float(tr.kV)))
        i = rc.Next
    return out
