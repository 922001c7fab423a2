"""The reserve product of the ancillary service: an upward reserve held per market interval,
activated rarely, paid for capacity and for activated energy (pure rules, arrays in/out).

Beside frequency regulation (:mod:`.rules`) the TSO may procure ``reserve.requested_kw`` of
**upward reserve** (like a 15-minute manual reserve, mFRR: with 900 s intervals the product
lasts one interval): capacity the VPP's community batteries hold back so that they can
discharge it for the whole interval when the TSO activates it.

* **Headroom** (:func:`reserve_headroom_kw`): what a battery can still discharge for a whole
  interval *on top of* its regulation capacity (regulation is symmetric, so it already holds
  ``regulation x interval`` at the bottom of the SOC band and ``regulation`` of its power):
  ``min(power - regulation, energy above the floor / interval - regulation)``, at most
  ``storage_share`` of its power. Procurement is :func:`.rules.procure`, pro rata in watts.
* **Activation** (:func:`activations`): a seeded draw per interval with probability
  ``activation_probability`` (reserve is activated rarely), or the intervals the scenario
  lists; an activated interval asks every reserving battery for its capacity for the whole
  interval (delivered as far as the SOC band allows: :func:`.rules.dispatch`).
* **Payment** (:func:`reserve_amounts`): capacity ``floor(capacity_w x interval_s x price /
  (3600 x 1e6))`` (price per MW-hour) and activated energy ``floor(energy_wh x price / 1e6)``
  (price per MWh), micro-units, the formula ``AncillaryServices.settleReserve`` computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin.market.units import MICRO

__all__ = ["ReservePayment", "activations", "reserve_amounts", "reserve_headroom_kw"]


def reserve_headroom_kw(*, energy_wh: np.ndarray, capacity_wh: float, power_kw: np.ndarray,
                        regulation_kw: np.ndarray, soc_min: float, interval_s: int,
                        eta: float = 1.0) -> np.ndarray:
    """Upward headroom (kW) of batteries for a whole interval left after their regulation
    capacity (module docstring)."""
    h = interval_s / 3600.0
    up_p = power_kw - regulation_kw
    up_e = np.clip(energy_wh - soc_min * capacity_wh, 0.0, None) * eta / h / 1000.0 - regulation_kw
    out: np.ndarray = np.clip(np.minimum(up_p, up_e), 0.0, None)
    return out


def activations(rng: np.random.Generator, *, n_intervals: int, probability: float,
                listed: Sequence[int] | None = None) -> np.ndarray:
    """Whether the reserve is activated in each interval: the ``listed`` intervals, else a
    seeded Bernoulli draw per interval."""
    if listed is not None:
        out = np.zeros(n_intervals, dtype=bool)
        out[[k for k in listed if 0 <= k < n_intervals]] = True
        return out
    act: np.ndarray = rng.random(n_intervals) < probability
    return act


def reserve_amounts(*, capacity_w: int, energy_wh: int, interval_s: int,
                    capacity_price_per_mw_h: int, energy_price_per_mwh: int) -> tuple[int, int]:
    """Integer ``(capacity, energy)`` payment of one resource for one interval (micro-units)."""
    cap = capacity_w * interval_s * capacity_price_per_mw_h // (3600 * MICRO)
    energy = energy_wh * energy_price_per_mwh // MICRO
    return cap, energy


@dataclass(frozen=True, slots=True)
class ReservePayment:
    """One resource's reserve payment for one interval (micro-units)."""

    interval: int
    device_id: int
    owner: int
    capacity_w: int
    energy_wh: int  # activated energy delivered
    capacity_amount: int
    energy_amount: int

    @property
    def amount(self) -> int:
        return self.capacity_amount + self.energy_amount
