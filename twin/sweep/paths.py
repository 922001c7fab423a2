"""Dotted field paths into a scenario: check them against :class:`~twin.scenario.Scenario`, set them in a mapping."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from twin.scenario import Scenario

__all__ = ["check_path", "with_values"]


def check_path(path: str) -> str | None:
    """Return why ``path`` (e.g. ``agents.households.pv.share``) is not a Scenario field, or None."""
    model: type[BaseModel] | None = Scenario
    parts = path.split(".")
    for i, part in enumerate(parts):
        if model is None:
            return f"'{'.'.join(parts[:i])}' is a value, not a section: no field '{part}' in it"
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the scenario"
            return f"no field '{part}' in {where} (fields: {', '.join(sorted(fields))})"
        ann = fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return None


def with_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with each dotted path in ``values`` set (sections created as needed)."""
    out = copy.deepcopy(data)
    for path, value in values.items():
        node = out
        *head, leaf = path.split(".")
        for part in head:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = copy.deepcopy(value)
    return out
