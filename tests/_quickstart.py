"""The quickstart scenario with changes, shared by the grid and agent tests."""

from __future__ import annotations

from pathlib import Path

from twin.scenario import Scenario, load_scenario, scenario_from_dict

QUICKSTART = Path(__file__).resolve().parent.parent / "scenarios" / "quickstart.yaml"


def quickstart_with(**changes: object) -> Scenario:
    """The quickstart scenario with ``a__b=value`` changes (``agents__evs__count=3``)."""
    data = load_scenario(QUICKSTART).model_dump(mode="json")
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split("__")
        for key in path:
            node = node[key]
        node[last] = value
    return scenario_from_dict(data)
