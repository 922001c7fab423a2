"""The physical grid: feeders (pandapower, SimBench, CIGRE, case33bw, OpenDSS decks) and their
load/PV profiles, the compiled balanced batch power flow and the three-phase one, DER controls,
topology and islands, resilience studies. Imports nothing of the market, chain or services.

``Feeder3ph``, ``BatchPowerFlow3ph`` and ``PowerFlow3phResult`` are loaded on first use, so
importing any ``twin.grid`` module costs nothing extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.grid.feeder3ph import Feeder3ph
    from twin.grid.pf3ph import BatchPowerFlow3ph, PowerFlow3phResult

__all__ = ["BatchPowerFlow3ph", "Feeder3ph", "PowerFlow3phResult"]


def __getattr__(name: str) -> Any:
    if name == "Feeder3ph":
        from twin.grid.feeder3ph import Feeder3ph

        return Feeder3ph
    if name in ("BatchPowerFlow3ph", "PowerFlow3phResult"):
        from twin.grid import pf3ph

        return getattr(pf3ph, name)
    raise AttributeError(f"module 'twin.grid' has no attribute {name!r}")
