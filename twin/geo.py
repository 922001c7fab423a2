"""GeoJSON point parsing shared by the topology file and the services' bus distances."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["geo_point"]


def geo_point(geo: Any) -> tuple[float, float] | None:
    """``(x, y)`` of a GeoJSON point string (``net.bus.geo``); None if absent or malformed."""
    if not isinstance(geo, str) or not geo:
        return None
    try:
        x, y = json.loads(geo)["coordinates"][:2]
        x, y = float(x), float(y)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return (x, y) if math.isfinite(x) and math.isfinite(y) else None
