"""Scenario blocks for DER grid-support functions and tap changers (pydantic), and their
conversion to the control objects of :mod:`twin.grid.der_functions` / :mod:`twin.grid.tap_control`.

A ``der_functions:`` block on an inverter group (``agents.households.pv``,
``agents.households.battery``, ``agents.evs`` (V2G chargers), ``agents.community_storage``)::

    der_functions:
      category: B                 # IEEE 1547-2018 normal-performance category (A | B)
      volt_var: {}                # on, with the category's default curve; or give
                                  #   v_pu: [V1, V2, V3, V4], q_pu: [Q1..Q4], v_ref_pu, response_time_s
      volt_watt: {}               # on (Table 10 defaults); or v_pu: [V1, V2], p_pu: [P1, P2]
      # watt_var: {p_pu: [..3], q_pu: [..3]} | constant_pf: {pf: 0.95, excitation: absorbing}
      # constant_var: {q_pu: -0.1}       (at most one reactive-power mode)
      freq_watt: {}               # droop on the TSO's frequency (agents.tso.frequency_hz)
      s_rated_factor: 1.1         # inverter kVA per kW of PV peak / battery power
      q_max_pu: 0.44              # reactive capability, pu of kVA

Curves are checked when the scenario loads: every problem is reported with its field path
(e.g. ``agents.households.pv.der_functions: volt_var.q_pu: must be non-increasing ...``).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twin.grid.der_functions import (
    ConstantPowerFactor,
    ConstantVar,
    DerFunctionError,
    DerFunctions,
    FrequencyWatt,
    VoltVar,
    VoltWatt,
    WattVar,
)

__all__ = ["DerFunctionsSpec", "DsoSpec", "EnvelopeSpec", "OltcSpec"]

_Resp = Annotated[float, Field(ge=0)] | None


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class VoltVarSpec(_Spec):
    v_pu: tuple[float, float, float, float] | None = None
    q_pu: tuple[float, float, float, float] | None = None
    v_ref_pu: float = 1.0
    response_time_s: _Resp = None


class WattVarSpec(_Spec):
    p_pu: tuple[float, float, float] | None = None
    q_pu: tuple[float, float, float] | None = None
    response_time_s: _Resp = None


class ConstantPFSpec(_Spec):
    pf: float = 0.95
    excitation: Literal["injecting", "absorbing"] = "absorbing"
    response_time_s: _Resp = None


class ConstantVarSpec(_Spec):
    q_pu: float = 0.0
    response_time_s: _Resp = None


class VoltWattSpec(_Spec):
    v_pu: tuple[float, float] | None = None
    p_pu: tuple[float, float] | None = None
    response_time_s: _Resp = None


class FreqWattSpec(_Spec):
    f_nom_hz: float = 50.0
    db_hz: float = 0.036
    droop: float = 0.05
    response_time_s: _Resp = None


class DerFunctionsSpec(_Spec):
    """IEEE 1547-2018 grid-support functions of an inverter group (see the module docstring)."""

    category: Literal["A", "B"] = "B"
    volt_var: VoltVarSpec | None = None
    watt_var: WattVarSpec | None = None
    constant_pf: ConstantPFSpec | None = None
    constant_var: ConstantVarSpec | None = None
    volt_watt: VoltWattSpec | None = None
    freq_watt: FreqWattSpec | None = None
    s_rated_factor: Annotated[float, Field(ge=1.0, le=2.0)] = 1.1
    q_max_pu: Annotated[float, Field(ge=0.0, le=1.0)] = 0.44
    priority: Literal["reactive", "active"] = "reactive"

    @model_validator(mode="after")
    def _check(self) -> Self:
        modes = [m for m in ("volt_var", "watt_var", "constant_pf", "constant_var") if getattr(self, m) is not None]
        if len(modes) > 1:
            raise ValueError(f"at most one reactive-power mode (IEEE 1547), got {modes}")
        for can_absorb in (False, True):
            try:
                self.functions(p_rated_mw=1.0, can_absorb=can_absorb)
            except DerFunctionError as exc:
                raise ValueError(str(exc)) from None
        return self

    def functions(self, *, p_rated_mw: float, can_absorb: bool, path: str = "") -> DerFunctions:
        """The device's :class:`DerFunctions` at its active-power rating ``p_rated_mw``."""
        cat = self.category
        reactive: VoltVar | WattVar | ConstantPowerFactor | ConstantVar | None = None
        if self.volt_var is not None:
            d = VoltVar.category(cat)
            s = self.volt_var
            reactive = VoltVar(v_pu=s.v_pu or d.v_pu, q_pu=s.q_pu or d.q_pu, v_ref_pu=s.v_ref_pu,
                               response_time_s=d.response_time_s if s.response_time_s is None else s.response_time_s)
        elif self.watt_var is not None:
            dw = WattVar.category(cat)
            w = self.watt_var
            reactive = WattVar(p_pu=w.p_pu or dw.p_pu, q_pu=w.q_pu or dw.q_pu,
                               response_time_s=dw.response_time_s if w.response_time_s is None else w.response_time_s)
        elif self.constant_pf is not None:
            c = self.constant_pf
            reactive = ConstantPowerFactor(pf=c.pf, excitation=c.excitation,
                                           response_time_s=10.0 if c.response_time_s is None else c.response_time_s)
        elif self.constant_var is not None:
            cv = self.constant_var
            reactive = ConstantVar(q_pu=cv.q_pu, response_time_s=10.0 if cv.response_time_s is None else cv.response_time_s)
        vw = None
        if self.volt_watt is not None:
            dv = VoltWatt.category(cat, can_absorb=can_absorb)
            v = self.volt_watt
            vw = VoltWatt(v_pu=v.v_pu or dv.v_pu, p_pu=v.p_pu or dv.p_pu,
                          response_time_s=dv.response_time_s if v.response_time_s is None else v.response_time_s)
        fw = None
        if self.freq_watt is not None:
            f = self.freq_watt
            fw = FrequencyWatt(f_nom_hz=f.f_nom_hz, db_of_hz=f.db_hz, db_uf_hz=f.db_hz, k_of=f.droop, k_uf=f.droop,
                               response_time_s=5.0 if f.response_time_s is None else f.response_time_s)
        return DerFunctions(s_rated_mva=p_rated_mw * self.s_rated_factor, p_rated_mw=p_rated_mw, reactive=reactive,
                            volt_watt=vw, freq_watt=fw, q_max_pu=self.q_max_pu,
                            p_min_pu=-1.0 if can_absorb else 0.0, priority=self.priority, path=path)


class OltcSpec(_Spec):
    """On-load tap changer of the feeder's transformer (regulates its LV bus)."""

    v_set_pu: Annotated[float, Field(ge=0.8, le=1.2)] = 1.0
    #: total dead band; default 1.5 tap steps
    band_pu: Annotated[float, Field(gt=0)] | None = None
    delay_s: Annotated[float, Field(ge=0)] = 30.0
    #: grid.phases: 3 only -- the phase whose LV voltage the gang-operated changer regulates,
    #: or the highest / lowest of the three (OpenDSS PTphase 1..3 / MAX / MIN); null: a
    control_phase: Literal["a", "b", "c", "max", "min"] | None = None


class EnvelopeSpec(_Spec):
    """How the DSO computes dynamic operating envelopes (:mod:`twin.grid.envelopes`)."""

    #: fair share of the headroom: the same kW for everyone (``equal``) or the same share of
    #: each connection's capacity (``proportional``)
    rule: Literal["equal", "proportional"] = "equal"
    #: levels screened in the batch (0, 1/levels, ..., 1): the envelope's resolution
    levels: Annotated[int, Field(ge=1, le=1000)] = 32
    #: the forecast without trades already violates: publish zero limits, or stop the run
    negative: Literal["zero", "error"] = "zero"


class DsoSpec(_Spec):
    """The DSO's policy: curtail cleared trades after the market, publish envelopes before
    it (the market clears within them), or both."""

    policy: Literal["curtail", "envelopes", "both"] = "curtail"
    envelopes: EnvelopeSpec = EnvelopeSpec()
