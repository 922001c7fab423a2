"""``market.services.ancillary``: the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from twin.spec_base import NonNegFloat, PosFloat, Share, SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["AncillaryServiceSpec", "RegulationSignalSpec", "ReserveProductSpec", "problems"]

FIELD = "market.services.ancillary"


class RegulationSignalSpec(SpecModel):
    """The regulation signal in [-1, 1] (+1: full up regulation). Without ``file`` a seeded
    synthetic one: an Ornstein-Uhlenbeck process (mean 0, stationary standard deviation
    ``sigma``, correlation time ``tau_s``) like a RegA-style AGC signal; with ``file`` a
    recorded one: a CSV (path relative to the working directory) with one value per
    ``step_s`` over the whole run, either one number a line or a header with a column
    ``signal``."""

    file: str | None = None
    #: resolution of the signal, s (divides the market interval)
    step_s: Annotated[int, Field(gt=0, le=3600)] = 60
    tau_s: PosFloat = 300.0
    sigma: Annotated[float, Field(gt=0, le=1)] = 0.35


class ReserveProductSpec(SpecModel):
    """An upward reserve product beside regulation (:mod:`twin.services.ancillary.reserve`):
    each interval the TSO procures up to ``requested_kw`` of capacity the community batteries
    hold back, on top of their regulation capacity, to discharge for the whole interval when
    the TSO activates it (rarely: a seeded draw with ``activation_probability``, or the
    ``activated_intervals`` listed); paid for the capacity held and the energy activated."""

    enabled: bool = False
    #: reserve capacity the TSO procures each interval, kW (null: none -- an error when enabled)
    requested_kw: PosFloat | None = None
    #: capacity price, currency per MW of reserve held per hour
    capacity_price_per_mw_h: NonNegFloat = 10.0
    #: activated energy price, currency per MWh delivered
    energy_price_per_mwh: NonNegFloat = 150.0
    #: chance that the TSO activates the reserve in an interval (seeded)
    activation_probability: Share = 0.05
    #: intervals (0-based) the TSO activates it in, instead of the seeded draw
    activated_intervals: list[Annotated[int, Field(ge=0)]] | None = None
    #: share of each community battery's power it may offer as reserve (after regulation)
    storage_share: Share = 1.0


class AncillaryServiceSpec(SpecModel):
    """Frequency regulation for the VPP (twin/services/ancillary): each interval the TSO
    procures up to ``requested_kw`` of symmetric regulation capacity; the VPP aggregator
    offers its community batteries', EV chargers' and flexible loads' headroom (the share of
    each resource's power given below, inside its energy limits); the reserved headroom is
    withheld from the energy market; the resources follow the regulation signal inside the
    interval; the TSO (through the DSO's account) pays capacity and performance, scaled by
    the precision score, settled on the ledger when the interval settles."""

    enabled: bool = False
    #: capacity the TSO procures each interval, kW (null: none -- an error when enabled)
    requested_kw: PosFloat | None = None
    #: capacity price, currency per MW of capacity per hour (PJM RMCCP-like)
    capacity_price_per_mw_h: NonNegFloat = 40.0
    #: performance price, currency per MW of mileage (sum of the set point's changes)
    performance_price_per_mw: NonNegFloat = 2.0
    #: share of each community battery's power limit it offers as regulation capacity
    storage_share: Share = 0.5
    #: share of each flexible load's power it offers (around its planned run)
    flex_share: Share = 1.0
    #: share of each EV charger's power it offers (around the charging it does anyway)
    ev_share: Share = 1.0
    signal: RegulationSignalSpec = RegulationSignalSpec()
    reserve: ReserveProductSpec = ReserveProductSpec()


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    from twin.services.ancillary.rules import AncillaryError, load_signal

    spec = sc.market.services.ancillary  # type: ignore[attr-defined]
    ag = sc.agents
    out: list[tuple[str, str]] = []
    if spec.requested_kw is None:
        out.append((f"{FIELD}.requested_kw", "ancillary services need the TSO's regulation request "
                                             "(capacity it procures per interval, kW)"))
    if ag.vpp.members == 0 or ag.households.pv.share == 0:
        out.append(("agents.vpp.members", "ancillary services need a VPP aggregator to offer the "
                                          "headroom (agents.vpp.members > 0, with PV households)"))
    shares = (spec.storage_share * ag.community_storage.count, spec.ev_share * ag.evs.count,
              spec.flex_share * round(ag.households.flex.share * ag.households.count))
    if not any(shares):
        out.append((f"{FIELD}.enabled", "regulation product without any capable resource (no "
                                        "community storage, EV or flexible load with a share > 0)"))
    res = spec.reserve
    if res.enabled and not spec.enabled:
        out.append((f"{FIELD}.enabled", "the reserve product is part of the ancillary service "
                                        "(set market.services.ancillary.enabled: true)"))
    if res.enabled:
        if res.requested_kw is None:
            out.append((f"{FIELD}.reserve.requested_kw", "the reserve product needs the TSO's request "
                                                         "(capacity it procures per interval, kW)"))
        if res.storage_share * ag.community_storage.count == 0:
            out.append((f"{FIELD}.reserve.enabled", "reserve product without any capable resource (it "
                                                    "needs community storage with reserve.storage_share > 0)"))
        late = [k for k in res.activated_intervals or [] if k >= sc.n_intervals]
        if late:
            out.append((f"{FIELD}.reserve.activated_intervals", f"intervals {late} are past the run's "
                                                                f"last interval ({sc.n_intervals - 1})"))
    sig = spec.signal
    if sc.market.interval_s % sig.step_s:
        out.append((f"{FIELD}.signal.step_s", f"{sig.step_s} s does not divide the market interval "
                                              f"({sc.market.interval_s} s)"))
    elif sig.file is not None:
        try:
            load_signal(sig.file, n_intervals=sc.n_intervals, interval_s=sc.market.interval_s,
                        step_s=sig.step_s, field=f"{FIELD}.signal.file")
        except AncillaryError as exc:
            out.append((exc.field, str(exc).removeprefix(f"{exc.field}: ")))
    return out
