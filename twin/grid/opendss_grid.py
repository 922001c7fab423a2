"""OpenDSS feeders in scenarios (``grid.kind: opendss``): the spec, its checks and the element map.

::

    grid:
      kind: opendss
      phases: 3
      opendss:
        deck: decks/13Bus/IEEE13Nodeckt.dss   # relative to the scenario file
        commands: ["Transformer.Reg1.Taps=[1.0 1.0625]", "set controlmode=off"]
        regulators: off                       # deck: the deck's RegControls act in the run
        capacitors: off                       # deck: the deck's CapControls switch in the run

With ``regulators: deck`` the deck's RegControls (:func:`twin.grid.regcontrol3ph.
regulators_from_opendss`) act inside the run, quasi-statically: each solve (the grid
simulator's step, each of the DSO's check solves) runs OpenDSS's static control loop from the
taps its previous solve ended on, starting from the deck's taps (after ``commands``). ``off``
(the default) keeps the deck's taps fixed. ``capacitors: deck`` does the same for the deck's
CapControls (:func:`twin.grid.capcontrol3ph.capcontrols_from_opendss`): they share OpenDSS's
control queue with the regulators, and their states (steps in service) travel with the taps.

The deck is solved by the phase-frame engine (:class:`twin.grid.feeder3ph.Feeder3ph`, its own
loads included, with their models and connections). The agents need a pandapower net as
their element map (``net.load`` / ``net.sgen`` / ``net.storage`` rows), so
:func:`element_map_net` builds one from the deck: a bus per deck bus (same order and names),
an ``ext_grid`` at each Vsource's bus, one zero ``net.load`` row per deck load (named after
it: the households' candidate buses) and one ``net.line`` / ``net.trafo`` row per two-terminal
Line / Transformer, named after it, whose per-phase loading the DSO checks. Their impedances
are placeholders: this net is never solved (the balanced engine cannot solve a deck).

Checks before anything runs (:func:`opendss_problems`): the deck compiles and imports (OpenDSS's
message; every element the engine cannot model named), the scenario uses nothing that needs
the balanced engine, and a fixed phase connection (``a|b|c|abc``) of a present agent group
sits only on candidate buses that have that phase (the bus and its phases are named).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from twin.grid.feeder3ph import Feeder3ph, FeederImportError

__all__ = ["OpenDssSpec", "deck_feeder", "deck_regulators", "element_map_net", "opendss_problems", "resolve_deck_path"]


class OpenDssSpec(BaseModel):
    """An OpenDSS deck: the master file (relative paths are resolved against the scenario
    file's folder when the file is loaded) and commands run after it (e.g. fixed taps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deck: str = Field(min_length=1)
    commands: tuple[str, ...] = ()
    #: "deck": the deck's RegControls act in the run (quasi-static); "off": fixed taps
    regulators: Literal["deck", "off"] = "off"
    #: "deck": the deck's CapControls switch their capacitors in the run; "off": fixed states
    capacitors: Literal["deck", "off"] = "off"


def resolve_deck_path(data: Any, base_dir: Path) -> Any:
    """``data`` (a scenario mapping) with a relative ``grid.opendss.deck`` made absolute."""
    try:
        deck = data["grid"]["opendss"]["deck"]
    except (KeyError, TypeError):
        return data
    if not isinstance(deck, str) or Path(deck).is_absolute():
        return data
    out = dict(data)
    out["grid"] = dict(data["grid"])
    out["grid"]["opendss"] = dict(data["grid"]["opendss"])
    out["grid"]["opendss"]["deck"] = str((base_dir / deck).resolve())
    return out


_INCLUDE = re.compile(r"^\s*(?:redirect|compile)\s+(\"[^\"]+\"|'[^']+'|\S+)", re.IGNORECASE | re.MULTILINE)


def deck_fingerprint(path: str) -> str:
    """sha256 over the deck's master file and every file it ``redirect``s or ``compile``s
    (recursively, in order): what the deck *says*, wherever the checkout lives. A file that
    cannot be read enters as its name, so the fingerprint of a broken deck is still stable."""
    digest = hashlib.sha256()
    seen: set[Path] = set()

    def feed(file: Path) -> None:
        file = file.resolve()
        if file in seen:
            return
        seen.add(file)
        try:
            text = file.read_bytes()
        except OSError:
            digest.update(b"missing:" + file.name.encode())
            return
        digest.update(text)
        for match in _INCLUDE.finditer(text.decode("utf-8", "replace")):
            feed(file.parent / match.group(1).strip("\"'"))

    feed(Path(path))
    return digest.hexdigest()


@lru_cache(maxsize=4)
def _deck_feeder(path: str, mtime_ns: int, commands: tuple[str, ...]) -> Feeder3ph:
    return Feeder3ph.from_opendss(path, commands=commands)


def deck_feeder(spec: OpenDssSpec) -> Feeder3ph:
    """The deck's phase-frame feeder (imported once per file version and commands)."""
    path = os.path.abspath(spec.deck)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        raise FeederImportError(f"OpenDSS deck {spec.deck!r} not found") from None
    return _deck_feeder(path, mtime, tuple(spec.commands))


@lru_cache(maxsize=4)
def _deck_regulators(path: str, mtime_ns: int, commands: tuple[str, ...]) -> tuple[Any, ...]:
    from twin.grid.regcontrol3ph import regulators_from_opendss

    feeder = _deck_feeder(path, mtime_ns, commands)
    return tuple(regulators_from_opendss(feeder, path, commands=commands))


@lru_cache(maxsize=4)
def _deck_capacitors(path: str, mtime_ns: int, commands: tuple[str, ...], with_regs: bool) -> tuple[Any, ...]:
    from twin.grid.capcontrol3ph import capcontrols_from_opendss

    feeder = _deck_feeder(path, mtime_ns, commands)
    regs = _deck_regulators(path, mtime_ns, commands) if with_regs else ()
    return tuple(capcontrols_from_opendss(feeder, path, commands=commands, controlled_elems=[r.elem for r in regs]))


def deck_regulators(spec: OpenDssSpec) -> tuple[Any, ...]:
    """The deck's RegControls (``regulators: deck``), then its CapControls (``capacitors:
    deck``), on :func:`deck_feeder`'s feeder; an unsupported setting raises
    :class:`twin.grid.regcontrol3ph.RegulatorError` / :class:`twin.grid.capcontrol3ph.CapControlError`."""
    if spec.regulators == "off" and spec.capacitors == "off":
        return ()
    deck_feeder(spec)  # the deck's own errors first
    path = os.path.abspath(spec.deck)
    key = (path, os.stat(path).st_mtime_ns, tuple(spec.commands))
    regs = _deck_regulators(*key) if spec.regulators == "deck" else ()
    caps = _deck_capacitors(*key, spec.regulators == "deck") if spec.capacitors == "deck" else ()
    return (*regs, *caps)


def _phases(mask: np.ndarray) -> str:
    return "".join(p for p, has in zip("abc", mask, strict=True) if has) or "none"


def load_buses(feeder: Feeder3ph) -> list[int]:
    """Bus of each deck load (first phase's node), in the order of their first appearance."""
    node_bus = np.full(feeder.n_node, -1, dtype=np.int64)
    for p in range(3):
        ok = feeder.node_of[:, p] >= 0
        node_bus[feeder.node_of[ok, p]] = np.flatnonzero(ok)
    seen: dict[str, int] = {}
    for name, i in zip(feeder.load_names, feeder.load_i, strict=True):
        seen.setdefault(name, int(node_bus[i]))
    return list(seen.values())


def _deck_control_problems(spec: Any, *, field: str, kind: str, other: str, acts: str) -> list[tuple[str, str]]:
    """Rules of ``grid.opendss.<field>: deck`` (the deck's ``kind`` controls act): no
    ``controlmode=off`` among the commands, and the deck has such a control that imports
    (read with the ``other`` control family off)."""
    from twin.grid.capcontrol3ph import CapControlError
    from twin.grid.regcontrol3ph import RegulatorError

    path = f"grid.opendss.{field}"
    out: list[tuple[str, str]] = []
    off = [c for c in spec.commands if "".join(c.lower().split()).endswith("controlmode=off")]
    if off:
        out.append((path, f"'deck' contradicts {off[0]!r} in grid.opendss.commands ({acts} while the deck's "
                          "controls are off); drop one of them"))
    try:
        if not deck_regulators(spec.model_copy(update={other: "off"})):
            out.append((path, f"'deck': the deck {spec.deck!r} has no {kind}"))
    except (CapControlError, RegulatorError, FeederImportError) as exc:
        out.append((path, f"'deck': {exc}"))
    return out


def opendss_problems(scenario: Any) -> list[tuple[str, str]]:
    """Rules of an OpenDSS grid (``(field path, message)``); ``scenario`` is a Scenario."""
    g = scenario.grid
    if g.opendss is None:
        return [("grid.opendss", "grid.kind opendss needs grid.opendss.deck (the deck's master file)")]
    out: list[tuple[str, str]] = []
    if scenario.game is not None:
        out.append(("game", "the consortium game needs a pandapower feeder, not grid.kind opendss"))
    try:
        feeder = deck_feeder(g.opendss)
    except FeederImportError as exc:
        return [*out, ("grid.opendss.deck", str(exc))]
    if g.opendss.regulators == "deck":
        out += _deck_control_problems(g.opendss, field="regulators", kind="RegControl", other="capacitors",
                                      acts="the regulators would act")
    if g.opendss.capacitors == "deck":
        out += _deck_control_problems(g.opendss, field="capacitors", kind="CapControl", other="regulators",
                                      acts="the capacitors would switch")
    buses = load_buses(feeder)
    if not buses:
        return [*out, ("grid.opendss.deck", f"the deck {g.opendss.deck!r} has no loads to attach households to")]
    mask = feeder.bus_phases
    pc = g.phase_connection
    a = scenario.agents
    hh = a.households
    groups = [("households", hh.count > 0), ("pv", hh.count > 0 and hh.pv.share > 0),
              ("battery", hh.count > 0 and hh.pv.share > 0 and hh.battery.share > 0), ("evs", a.evs.count > 0),
              ("community_storage", a.community_storage.count > 0)]
    for group, present in groups:
        ph = getattr(pc, group)
        if not present or ph in ("random", "household"):
            continue
        if isinstance(ph, str):
            need = np.ones(3, bool) if ph == "abc" else np.arange(3) == "abc".index(ph)
            bad = [k for k in buses if not mask[k][need].all()]
            what = f"phase {ph!r}"
        else:  # weights: some phase of positive weight must exist
            bad = [k for k in buses if not (mask[k] & (ph.array() > 0)).any()]
            what = f"phase weights {ph.model_dump()}"
        if bad:
            listed = ", ".join(f"{feeder.bus_names[k]!r} (phases {_phases(mask[k])})" for k in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            out.append((f"grid.phase_connection.{group}",
                        f"{what} on bus {listed}{more}, which lacks it: devices sit at the deck's load buses; "
                        "use random or phase weights"))
    return out


def element_map_net(feeder: Feeder3ph) -> Any:
    """A pandapower net that maps the deck for the agents (see the module doc; never solved)."""
    import pandapower as pp

    net = pp.create_empty_network(name=Path(feeder.source).stem, sn_mva=feeder.sn_mva)
    node_bus = np.full(feeder.n_node, -1, dtype=np.int64)
    for p in range(3):
        ok = feeder.node_of[:, p] >= 0
        node_bus[feeder.node_of[ok, p]] = np.flatnonzero(ok)
    vn = np.array([feeder.node_vbase_kv[row[row >= 0][0]] * math.sqrt(3.0) if (row >= 0).any() else 1.0
                   for row in feeder.node_of])
    pp.create_buses(net, nr_buses=feeder.n_bus, vn_kv=vn, name=list(feeder.bus_names), index=np.arange(feeder.n_bus))
    for k, name in enumerate(feeder.elem_names):
        a, b = int(feeder.elem_ptr[k]), int(feeder.elem_ptr[k + 1])
        nodes, term = feeder.elem_nodes[a:b], feeder.elem_terminal[a:b]
        ends = [sorted({int(node_bus[n]) for n in nodes[term == t] if n >= 0}) for t in (0, 1)]
        if name.lower().startswith("vsource."):
            for bus in ends[0]:
                pp.create_ext_grid(net, bus=bus, vm_pu=1.0, name=name)
            continue
        if len(set(term.tolist())) != 2 or len(ends[0]) != 1 or len(ends[1]) != 1 or ends[0] == ends[1]:
            continue
        f, t = ends[0][0], ends[1][0]
        i_max = feeder.elem_i_max_ka[a:b]
        i_max_ka = float(np.nanmax(i_max)) if np.isfinite(i_max).any() else 1.0
        cls = name.split(".")[0].lower()
        if cls == "line":
            pp.create_line_from_parameters(net, from_bus=f, to_bus=t, length_km=1.0, r_ohm_per_km=0.01,
                                           x_ohm_per_km=0.01, c_nf_per_km=0.0, max_i_ka=i_max_ka, name=name)
        elif cls == "transformer":
            hv, lv = (f, t) if vn[f] >= vn[t] else (t, f)
            pp.create_transformer_from_parameters(
                net, hv_bus=hv, lv_bus=lv, sn_mva=i_max_ka * vn[f] * math.sqrt(3.0), vn_hv_kv=vn[hv],
                vn_lv_kv=vn[lv], vkr_percent=1.0, vk_percent=4.0, pfe_kw=0.0, i0_percent=0.0, name=name)
    buses = load_buses(feeder)
    names = list(dict.fromkeys(feeder.load_names))
    pp.create_loads(net, buses=buses, p_mw=0.0, q_mvar=0.0, name=names, type="deck")
    return net
