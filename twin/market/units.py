"""Integer units of the market and the one payment-rounding rule.

Every on-chain and market quantity is an integer:

* energy in watt-hours (``energy_wh``);
* prices in micro-units of currency per MWh (``price_per_mwh``), so 80.00 EUR/MWh is
  ``80_000_000``;
* money in micro-units of currency (the settlement token has 6 decimals, its base unit is
  one micro-unit).

Payment for ``energy_wh`` at ``price_per_mwh`` is ``energy_wh * price_per_mwh // 10**6``
(floor: Wh -> MWh is 1e-6, price micro/MWh -> micro/Wh). The Solidity contracts do exactly
the same arithmetic (``twin/chain/contracts/EnergyMarket.sol``, ``payment``).
Because every transfer moves one computed amount from one balance to another, no
settlement can create or destroy value whatever the rounding.
"""

from __future__ import annotations

__all__ = [
    "DEVICE_LIMIT",
    "ENERGY_MAX_WH",
    "INTERVAL_LIMIT",
    "MICRO",
    "PRICE_MAX",
    "WH_PER_MWH",
    "payment",
    "price_from_per_mwh",
    "price_to_per_mwh",
]

MICRO = 1_000_000
WH_PER_MWH = 1_000_000
#: Highest limit price accepted (100,000 currency units per MWh), on chain and off.
PRICE_MAX = 100_000 * MICRO
#: Most orders per device and interval (``TooManyOrders``), on chain and off: a device cannot
#: flood the book with tiny orders; the book holds at most this many orders per device.
MAX_ORDERS = 16
#: An order is stored in 128 bits, two to a storage slot (``OrderWords.sol``): its energy is
#: at most this (``BadEnergy`` beyond), its interval below :data:`INTERVAL_LIMIT`
#: (``IntervalClosed`` from it), and device ids are below :data:`DEVICE_LIMIT`
#: (``DeviceIdRange`` at registration), on chain and off.
ENERGY_MAX_WH = 2**32 - 1
INTERVAL_LIMIT = 2**28
DEVICE_LIMIT = 2**30
#: Signed-order and cancellation nonces are below this (a larger one is ``ReplayedNonce``).
NONCE_LIMIT = 2**56


def payment(energy_wh: int, price_per_mwh: int) -> int:
    """Money in micro-units for ``energy_wh`` at ``price_per_mwh`` (floor rounding)."""
    if energy_wh < 0 or price_per_mwh < 0:
        raise ValueError(f"payment needs non-negative integers, got {energy_wh=}, {price_per_mwh=}")
    return (energy_wh * price_per_mwh) // WH_PER_MWH


def price_from_per_mwh(currency_per_mwh: float) -> int:
    """Convert a price in currency/MWh (float, e.g. from a scenario) to micro-units/MWh."""
    return round(currency_per_mwh * MICRO)


def price_to_per_mwh(price_per_mwh: int) -> float:
    """Convert micro-units/MWh back to currency/MWh for display."""
    return price_per_mwh / MICRO
