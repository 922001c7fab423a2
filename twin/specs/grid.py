"""Scenario spec of the feeder: the grid, the DSO's operating limits and its network tariff."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from twin.grid.der_spec import OltcSpec
from twin.grid.opendss_grid import OpenDssSpec
from twin.grid.phase_spec import PhaseConnectionSpec
from twin.grid.zero_sequence import ZeroSequenceSpec
from twin.simbench_codes import simbench_code_problem
from twin.spec_base import CrossFieldError, NonNegFloat, PosFloat, SpecModel

__all__ = ["GridSpec", "NetworkTariffSpec"]

_Spec = SpecModel


class NetworkTariffSpec(_Spec):
    """Local network tariff published by the DSO: a time-of-use fee per MWh bought on the
    local market, ``peak_fee_per_mwh`` in ``[peak_start_hour, peak_end_hour)`` (UTC hour of
    day; wraps past midnight when ``peak_end_hour <= peak_start_hour``), else
    ``offpeak_fee_per_mwh``. Buyers bid their willingness to pay net of the fee. All zero
    (default): no fee, results as without a tariff."""

    offpeak_fee_per_mwh: NonNegFloat = 0.0
    peak_fee_per_mwh: NonNegFloat = 0.0
    peak_start_hour: Annotated[float, Field(ge=0, lt=24)] = 17.0
    peak_end_hour: Annotated[float, Field(ge=0, le=24)] = 21.0


class _DsoLimitsSpec(_Spec):
    """The DSO's operating limits (voltage band, branch loading) of a grid."""

    vm_min_pu: PosFloat = 0.95
    vm_max_pu: PosFloat = 1.05
    max_loading_percent: PosFloat = 100.0

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu ({self.vm_min_pu}) must be below vm_max_pu ({self.vm_max_pu})")
        return self


class GridSpec(_DsoLimitsSpec):
    """The feeder and the DSO's operating limits."""

    kind: Literal["simbench", "cigre_lv", "case33bw", "ieee_eu_lv", "opendss"] = "simbench"
    #: the deck of grid.kind "opendss" (twin/grid/opendss_grid.py)
    opendss: OpenDssSpec | None = None
    #: 3: solve the feeder per phase (twin/grid/phase_spec.py, snapshot3ph.py); 1: balanced
    phases: Literal[1, 3] = 1
    vuf_max_percent: Annotated[float, Field(gt=0)] = 2.0  # voltage-unbalance limit (EN 50160)
    phase_connection: PhaseConnectionSpec = PhaseConnectionSpec()
    #: what to assume for a three-phase solve of a feeder without zero-sequence data
    #: (SimBench, CIGRE LV, case33bw; twin/grid/zero_sequence.py); null: only feeders with it
    zero_sequence: ZeroSequenceSpec | None = None
    #: SimBench grid code (used when kind is "simbench").
    simbench_code: str = "1-LV-semiurb4--0-sw"
    #: local network tariff published by the DSO every interval
    tariff: NetworkTariffSpec = NetworkTariffSpec()
    #: on-load tap changer on the feeder transformer (twin/grid/tap_control.py); null: fixed tap
    oltc: OltcSpec | None = None

    @model_validator(mode="after")
    def _code(self) -> GridSpec:
        problem = simbench_code_problem(self.simbench_code) if self.kind == "simbench" else None
        if problem:
            raise CrossFieldError([("simbench_code", problem)])
        return self
