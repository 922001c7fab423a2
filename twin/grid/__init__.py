"""gridtwin's grid: pandapower feeders, the balanced batch power flow and the three-phase one."""

from twin.grid.feeder3ph import Feeder3ph
from twin.grid.pf3ph import BatchPowerFlow3ph, PowerFlow3phResult

__all__ = ["BatchPowerFlow3ph", "Feeder3ph", "PowerFlow3phResult"]
