"""External controls of a device's power (what a HIL controller asks of a DER).

Neutral on purpose: the agents model applies these to its dispatch
(:meth:`twin.agents.model.FeederModel.step_interval`, ``der_controls`` keyed by market
device id) and the HIL devices (:mod:`twin.hil`) build them from SunSpec model 704/802
registers; neither imports the other. Pure, no state.

Sign convention: SunSpec's generator convention, ``w > 0`` injects into the grid (PV
producing, battery discharging), ``w < 0`` absorbs (battery or EV charging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DERControl"]


@dataclass(frozen=True, slots=True)
class DERControl:
    """What a controller asks of one device (None: no constraint).

    ``w_max_w``: cap on the magnitude of active power (injection; absorption for an EV
    charger); ``w_set_w``: active-power set-point, generator convention; ``pf`` /
    ``pf_over_excited``: power factor while injecting; ``connected``: False disconnects.
    """

    w_max_w: float | None = None
    w_set_w: float | None = None
    pf: float | None = None
    pf_over_excited: bool = True
    connected: bool = True

    def apply(self, *, available_w: float, exact_set_point: bool = False) -> tuple[float, float]:
        """``(w, var)`` of a device that could do ``available_w`` (generator convention).

        ``w_set_w`` caps what is available (PV, EV: same sign only) or, with
        ``exact_set_point`` (a battery), replaces it; ``w_max_w`` then caps the magnitude.
        """
        if not self.connected:
            return 0.0, 0.0
        w = available_w
        if self.w_set_w is not None:
            if exact_set_point:
                w = self.w_set_w
            elif available_w >= 0 and self.w_set_w >= 0:
                w = min(available_w, self.w_set_w)
            elif available_w <= 0 and self.w_set_w <= 0:
                w = max(available_w, self.w_set_w)
        if self.w_max_w is not None:
            w = max(-self.w_max_w, min(w, self.w_max_w))
        var = 0.0
        if self.pf is not None and w > 0 and self.pf < 1.0:
            var = w * math.tan(math.acos(self.pf)) * (1.0 if self.pf_over_excited else -1.0)
        return w, var

    @property
    def is_default(self) -> bool:
        """True when the control constrains nothing."""
        return (self.w_max_w is None and self.w_set_w is None and self.pf is None
                and self.connected)
