"""The axis-title audit the page tests apply (``axis_audit``) catches what it should."""

from __future__ import annotations

from axis_audit import plotly_problems, vega_problems


def test_vega_axes_need_words_and_units() -> None:
    spec = {"layer": [{"encoding": {"x": {"field": "hour", "type": "quantitative", "title": "hour"},
                                    "y": {"field": "vm_pu", "type": "quantitative", "title": "vm_pu"}}},
                      {"encoding": {"y": {"field": "h", "type": "quantitative", "title": None}}}]}
    assert vega_problems(spec, "p") == ["p: x axis title 'hour' names no unit",
                                        "p: y axis title 'vm_pu' names no unit"]
    good = {"encoding": {"x": {"field": "hour", "type": "quantitative", "title": "time since start (h)"},
                         "y": {"field": "agent", "type": "nominal", "title": "agent"},
                         "color": {"field": "x", "type": "quantitative", "title": "x"}}}
    assert vega_problems(good, "p") == []
    hidden = {"encoding": {"x": {"field": "x", "type": "quantitative", "axis": None}}}
    assert vega_problems(hidden, "p") == []
    untitled = {"encoding": {"y": {"field": "value", "type": "quantitative", "title": None}}}
    assert vega_problems(untitled, "p") == ["p: y axis of 'value' has no title"]


def test_plotly_axes_need_words_and_units_unless_categorical() -> None:
    fig = {"data": [{"x": [1.0, 2.0], "y": ["pv 1", "bat 2"]}],
           "layout": {"xaxis": {"title": {"text": "time_s"}}, "yaxis": {"title": {"text": "device"}},
                      "xaxis2": {"visible": False}}}
    assert plotly_problems(fig, "p") == ["p: xaxis title 'time_s' names no unit"]
    fig["layout"]["xaxis"]["title"]["text"] = "twin time (s)"
    assert plotly_problems(fig, "p") == []
    fig["layout"]["yaxis"] = {}
    assert plotly_problems(fig, "p") == ["p: yaxis has no title"]
