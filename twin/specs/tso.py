"""Scenario spec of the TSO: demand-response calls, imbalance prices, upstream loss and the
system frequency it publishes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from twin.spec_base import CrossFieldError, NonNegFloat, PosFloat, SpecModel

__all__ = ["FrequencyEventSpec", "FrequencySpec", "TSOSpec"]

_Spec = SpecModel


class FrequencyEventSpec(_Spec):
    """A frequency excursion added to the series: ``delta_hz`` from ``start_s`` for ``duration_s``."""

    start_s: Annotated[int, Field(ge=0)]
    duration_s: Annotated[int, Field(gt=0)]
    delta_hz: Annotated[float, Field(ge=-5.0, le=5.0)]


class FrequencySpec(_Spec):
    """The system frequency the TSO publishes: the one source that both the inverters'
    frequency-watt droop (``der_functions.freq_watt``, in the grid and in the DSO's check) and
    the HIL devices (SunSpec 701 ``Hz``, their 1547 functions) read, through
    :meth:`twin.agents.tso.TSOAgent.system_frequency_hz`.

    ``source``: ``synthetic`` (default; seeded): an Ornstein-Uhlenbeck process (standard
    deviation ``std_hz``, correlation time ``tau_s``) around ``nominal_hz``, plus the
    deterministic deviations at hour changes of interconnected systems (a ramp to
    ``hour_change_hz`` and back within ``hour_change_s`` of each full hour, sign
    alternating) and the scenario's ``events``; ``series``: ``series_hz``, one value per
    market interval, repeated when shorter than the run; ``nominal``: ``nominal_hz``.
    """

    source: Literal["synthetic", "series", "nominal"] = "synthetic"
    nominal_hz: Literal[50, 60] = 50
    std_hz: NonNegFloat = 0.02
    tau_s: PosFloat = 120.0
    hour_change_hz: Annotated[float, Field(ge=0.0, le=0.5)] = 0.04
    hour_change_s: Annotated[int, Field(gt=0, le=1800)] = 300
    resolution_s: Annotated[int, Field(gt=0, le=3600)] = 1
    events: list[FrequencyEventSpec] = Field(default_factory=list)
    #: with ``source: series``: the frequency of each market interval (Hz), repeated
    series_hz: Annotated[list[Annotated[float, Field(ge=45, le=65)]], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _series(self) -> FrequencySpec:
        if self.source == "series" and self.series_hz is None:
            raise CrossFieldError([("series_hz", "source: series needs series_hz (one value per market "
                                    "interval, Hz)")])
        if self.source != "series" and self.series_hz is not None:
            raise CrossFieldError([("series_hz", f"only read with source: series (source is {self.source}); "
                                    "set source: series or drop series_hz")])
        return self


#: keys of the TSO's section that moved into ``frequency`` (#22: one frequency), and what to
#: write instead
_MOVED = {
    "frequency_hz": "moved: write agents.tso.frequency: {source: series, series_hz: [...]} "
                    "(the same per-interval values)",
    "nominal_frequency_hz": "moved: write agents.tso.frequency.nominal_hz",
}


class TSOSpec(_Spec):
    """TSO: demand-response calls when the forecast gap is large; imbalance prices; the
    system frequency (``frequency``)."""

    #: forecast net import (load - generation) of the feeder above which a DR event is
    #: called for the next interval; null: never
    gap_threshold_kw: PosFloat | None = None
    #: compensation offered per curtailed MWh in a DR event
    dr_price_per_mwh: NonNegFloat = 400.0
    #: imbalance price = retail * (1 + imbalance_gain * max(0, gap / threshold - 1))
    imbalance_gain: NonNegFloat = 0.5
    #: loss of the upstream grid from this time (seconds since start); null: never
    upstream_loss_s: Annotated[int, Field(ge=0)] | None = None
    upstream_restore_s: Annotated[int, Field(gt=0)] | None = None
    #: the system frequency (one source for frequency-watt and the HIL devices)
    frequency: FrequencySpec = FrequencySpec()

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = [(k, msg) for k, msg in _MOVED.items() if k in data]
            if moved:
                raise CrossFieldError(moved)
        return data

    @model_validator(mode="after")
    def _loss(self) -> TSOSpec:
        if self.upstream_restore_s is not None and (
            self.upstream_loss_s is None or self.upstream_restore_s <= self.upstream_loss_s
        ):
            raise ValueError("upstream_restore_s needs an earlier upstream_loss_s")
        return self
