"""Axis-title audit of the charts a dashboard page drew (read from Streamlit's AppTest
elements, no browser): every axis has a title in words, and every quantitative axis names
its unit (kWh, MW, pu, %, h, currency, ...)."""

from __future__ import annotations

import json
import re
from typing import Any

#: units (and unit-like counts) an axis title may name
UNIT = re.compile(r"(\b(k?Wh|MWh|W|kW|MW|var|Mvar|kvar|V|pu|Hz|ms|s|h|currency|gas|count|tokens?|shares|"
                  r"certificates|orders|trades|runs|devices|share)\b|%|\bper\b)")


#: a faceted chart's shared value axis, whose panels' titles carry the units
PANEL_UNIT = "(unit in the panel's title)"


def _vega_axes(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(channel, encoding) of every x/y channel drawn with an axis."""
    out = []
    inner = spec.get("spec", {})
    for layer in [spec, *spec.get("layer", []), inner, *inner.get("layer", [])]:
        enc = layer.get("encoding", {})
        for ch in ("x", "y"):
            e = enc.get(ch)
            if e is None or e.get("axis", {}) is None:
                continue
            out.append((ch, e))
    return out


def vega_problems(spec: dict[str, Any], where: str) -> list[str]:
    bad = []
    titled = {ch for ch, e in _vega_axes(spec) if e.get("title")}
    for ch, e in _vega_axes(spec):
        title = e.get("title")
        if not title:
            if ch in titled:  # another layer titles this axis (Vega-Lite shares it)
                continue
            bad.append(f"{where}: {ch} axis of {e.get('field')!r} has no title")
        elif e.get("type") == "quantitative" and not UNIT.search(str(title)) \
                and not ("facet" in spec and str(title).endswith(PANEL_UNIT)):
            bad.append(f"{where}: {ch} axis title {title!r} names no unit")
    return bad


def _categorical(fig: dict[str, Any], axis: str) -> bool:
    """Whether the traces on ``axis`` (``xaxis``, ``yaxis2``, ...) plot text values."""
    ch, ref = axis[0], axis[0] + axis[5:]
    for tr in fig.get("data", []):
        if tr.get(f"{ch}axis", ch) == ref:
            vals = tr.get(ch)
            if isinstance(vals, list):  # numbers may come as typed arrays (dicts)
                first = next((v for v in vals if v is not None), None)
                if isinstance(first, str):
                    return True
    return False


def plotly_problems(fig: dict[str, Any], where: str) -> list[str]:
    bad = []
    for name, axis in fig.get("layout", {}).items():
        if not re.fullmatch(r"[xy]axis\d*", name) or axis.get("visible") is False:
            continue
        title = (axis.get("title") or {}).get("text")
        if not title:
            bad.append(f"{where}: {name} has no title")
        elif axis.get("type") != "category" and not _categorical(fig, name) and not UNIT.search(str(title)):
            bad.append(f"{where}: {name} title {title!r} names no unit")
    return bad


def chart_problems(at: Any, where: str) -> list[str]:
    """Axis-title problems of every Vega-Lite and plotly chart on the page ``at`` shows."""
    bad: list[str] = []
    for el in at.get("vega_lite_chart"):
        bad += vega_problems(json.loads(el.proto.spec), where)
    for el in at.get("plotly_chart"):
        bad += plotly_problems(json.loads(el.proto.spec), where)
    return bad
