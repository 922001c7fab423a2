"""Tiny sweep specs for the tests: CIGRE LV, synthetic profiles, reference ledger, 2 intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

BASE: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "start": "2016-06-15T11:00:00Z",
    "duration_s": 1800,
    "grid": {"kind": "cigre_lv"},
    "agents": {"households": {"count": 4, "profiles": "synthetic"}, "evs": {"count": 1},
               "community_storage": {"count": 0}},
    "market": {"ledger": "reference"},
}


def write_spec(folder: Path, name: str = "tiny", **fields: Any) -> Path:
    spec = {"name": name, "base": BASE, "parameters": {"agents.households.pv.share": [0.3, 0.7]},
            "seeds": 2, "timeout_s": 300} | fields
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
