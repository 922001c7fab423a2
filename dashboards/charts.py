"""Vega-Lite chart specs for the dashboards (``st.vega_lite_chart``, Streamlit's native charts).

Why not plotly on the run pages: a browser tab that shows one plotly chart first loads and
compiles plotly.js (4.7 MB) — about a second on an idle 2-core machine and several under load
— whatever the figure's size, while Vega-Lite's bundle is a sixth of that (measured with
``bench/dashboard.py``). The run pages and the Sweep page's scatter and heat map therefore use
Vega-Lite; plotly stays where it has no Vega-Lite equivalent worth the code (the Sweep page's
parallel coordinates, on demand) and on pages whose folders are rare (Resilience, HIL).

The builders return plain spec dicts (no Altair: its schema validation costs ~50 ms a chart).
Data travels as named datasets (``spec["datasets"]``, which Streamlit ships as Arrow, not
JSON), so each layer can have its own table. Every builder takes keyword arguments only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

__all__ = ["bars", "field", "layered", "lines", "show", "tooltip"]

Spec = dict[str, Any]


def field(name: str, *, kind: str = "quantitative", title: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """An encoding channel for column ``name``."""
    # a dot in a column name (sweep parameters are field paths) would be a nested-field path
    enc: dict[str, Any] = {"field": name.replace(".", "\\."), "type": kind,
                           "title": name if title is None else title}
    return enc | extra


def tooltip(*, data: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Tooltip channels for ``columns`` of ``data`` (numeric or nominal)."""
    out = []
    for c in columns:
        kind = "quantitative" if pd.api.types.is_numeric_dtype(data[c]) else "nominal"
        out.append(field(c, kind=kind))
    return out


_tips = tooltip  # the builders below have a ``tooltip`` argument


def layered(*, datasets: Mapping[str, pd.DataFrame], layers: Sequence[Spec], height: int,
            resolve: Mapping[str, Any] | None = None, legend_top: bool = True) -> Spec:
    """A layered chart over named datasets (each layer says ``{"data": {"name": ...}}``)."""
    spec: Spec = {"datasets": dict(datasets), "height": height, "layer": list(layers)}
    if resolve:
        spec["resolve"] = dict(resolve)
    if legend_top:
        spec["config"] = {"legend": {"orient": "top", "direction": "horizontal"}}
    return spec


def lines(*, data: pd.DataFrame, x: str, y: str, color: str | None = None,
          x_title: str | None = None, y_title: str | None = None, height: int = 320,
          hlines: Sequence[float] = (), band: tuple[float, float] | None = None,
          tooltip: Sequence[str] = (), points: bool = False, title: str | None = None) -> Spec:
    """Lines of ``y`` against ``x`` (one per ``color`` value), with optional horizontal rules
    and a shaded horizontal band."""
    y_name = y_title or y  # every layer gets it, or Vega-Lite joins the layers' titles
    enc: dict[str, Any] = {"x": field(x, title=x_title or x),
                           "y": field(y, title=y_name, scale={"zero": False})}
    if color:
        enc["color"] = field(color, kind="nominal")
    enc["tooltip"] = _tips(data=data, columns=[x, y, *([color] if color else []), *tooltip])
    layers: list[Spec] = []
    if band is not None:
        layers.append({"data": {"values": [{"lo": band[0], "hi": band[1]}]},
                       "mark": {"type": "rect", "color": "green", "opacity": 0.08},
                       "encoding": {"y": field("lo", title=y_name), "y2": {"field": "hi"}}})
    layers.append({"data": {"name": "main"}, "mark": {"type": "line", "point": points},
                   "encoding": enc})
    if hlines:
        layers.append({"data": {"values": [{"h": float(v)} for v in hlines]},
                       "mark": {"type": "rule", "color": "red", "strokeDash": [4, 4]},
                       "encoding": {"y": field("h", title=y_name)}})
    spec = layered(datasets={"main": data}, layers=layers, height=height)
    if title:
        spec["title"] = title
    return spec


def bars(*, data: pd.DataFrame, x: str, y: str, color: str | None = None,
         horizontal: bool = False, x_title: str | None = None, y_title: str | None = None,
         x_kind: str = "quantitative", y_kind: str = "quantitative", height: int = 320,
         tooltip: Sequence[str] = (), sort: Sequence[Any] | None = None,
         colors: Mapping[str, str] | None = None) -> Spec:
    """Bars (stacked by ``color``); ``horizontal``: categories on y. ``sort``: the category
    order; ``colors``: a fixed colour per ``color`` value."""
    enc: dict[str, Any] = {"x": field(x, kind=x_kind, title=x_title or x),
                           "y": field(y, kind=y_kind, title=y_title or y)}
    cat = "y" if horizontal else "x"
    if sort is not None:
        enc[cat]["sort"] = list(sort)
    if color:
        enc["color"] = field(color, kind="nominal")
        if colors:
            enc["color"]["scale"] = {"domain": list(colors), "range": list(colors.values())}
    enc["tooltip"] = _tips(data=data, columns=[x, y, *([color] if color else []), *tooltip])
    return layered(datasets={"main": data}, height=height,
                   layers=[{"data": {"name": "main"}, "mark": {"type": "bar"}, "encoding": enc}])


def show(*, spec: Spec, key: str, where: Any = None) -> None:
    """Draw ``spec`` full width (``where``: a column or container; default the page)."""
    (where or st).vega_lite_chart(spec=spec, width="stretch", key=key)
