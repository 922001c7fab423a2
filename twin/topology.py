"""The feeder's topology and coordinates as a small JSON file, for readers without pandapower.

``twin run`` writes ``topology.json`` into the results folder right after the feeder is built,
so the dashboards can draw the network without rebuilding it. Coordinates come from the
net's bus geodata (``net.bus.geo``, GeoJSON points; SimBench: longitude/latitude); when a
net has none, a radial layout is computed from the graph (depth from the slack bus on x,
leaf order on y), and ``layout`` says which.
"""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from twin.geo import geo_point

__all__ = ["feeder_topology", "write_topology"]

TOPOLOGY_VERSION = 1


_point = geo_point


def _radial_layout(buses: list[int], edges: list[tuple[int, int]],
                   roots: list[int]) -> dict[int, tuple[float, float]]:
    """Tree-like layout: x = hops from the nearest root, y = order of the leaves below
    (a parent sits at the mean of its children). Meshes are drawn along a BFS tree."""
    adj: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    pos: dict[int, tuple[float, float]] = {}
    next_y = 0.0
    for root in [*roots, *buses]:
        if root in pos:
            continue
        depth = {root: 0}
        order = [root]
        children: dict[int, list[int]] = defaultdict(list)
        queue = deque([root])
        while queue:
            u = queue.popleft()
            for v in sorted(adj[u]):
                if v not in depth and v not in pos:
                    depth[v] = depth[u] + 1
                    children[u].append(v)
                    order.append(v)
                    queue.append(v)
        ys: dict[int, float] = {}
        stack = [(root, False)]
        while stack:  # post-order without recursion (deep feeders)
            node, expanded = stack.pop()
            kids = children[node]
            if not kids:
                ys[node] = next_y
                next_y += 1.0
            elif expanded:
                ys[node] = sum(ys[c] for c in kids) / len(kids)
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(kids))
        for v in order:
            pos[v] = (float(depth[v]), -ys[v])
        next_y += 1.0
    return pos


def feeder_topology(net: Any) -> dict[str, Any]:
    """Buses (with coordinates), lines, transformers, switches and slack buses of ``net``."""
    bus_ids = [int(b) for b in net.bus.index]
    geo = net.bus["geo"] if "geo" in net.bus.columns else None
    points = {b: _point(geo.at[b]) if geo is not None else None for b in bus_ids}
    lines: list[dict[str, Any]] = [
        {"line": int(i), "from_bus": int(r.from_bus), "to_bus": int(r.to_bus),
         "length_km": float(r.length_km), "in_service": bool(r.in_service),
         "name": None if r.get("name") is None else str(r.get("name"))}
        for i, r in net.line.iterrows()
    ]
    trafos: list[dict[str, Any]] = [
        {"trafo": int(i), "hv_bus": int(r.hv_bus), "lv_bus": int(r.lv_bus),
         "sn_mva": float(r.sn_mva), "in_service": bool(r.in_service)}
        for i, r in net.trafo.iterrows()
    ]
    switches: list[dict[str, Any]] = [
        {"switch": int(i), "bus": int(r.bus), "element": int(r.element), "et": str(r.et),
         "closed": bool(r.closed)}
        for i, r in net.switch.iterrows()
    ]
    slack = sorted({int(b) for b in net.ext_grid.bus})
    located = {b: p for b, p in points.items() if p is not None}
    pos: dict[int, tuple[float, float]]
    if len(located) == len(bus_ids) and len(set(located.values())) > 1:
        layout, pos = "geodata", located
    else:
        edges = [(int(ln["from_bus"]), int(ln["to_bus"])) for ln in lines]
        edges += [(int(t["hv_bus"]), int(t["lv_bus"])) for t in trafos]
        edges += [(int(s["bus"]), int(s["element"])) for s in switches if s["et"] == "b"]
        layout, pos = "computed", _radial_layout(bus_ids, edges, slack)
    buses = [
        {"bus": b, "name": str(net.bus.at[b, "name"]), "vn_kv": float(net.bus.at[b, "vn_kv"]),
         "x": pos[b][0], "y": pos[b][1]}
        for b in bus_ids
    ]
    return {"version": TOPOLOGY_VERSION, "layout": layout, "buses": buses, "lines": lines,
            "trafos": trafos, "switches": switches, "slack_buses": slack}


def write_topology(net: Any, out_dir: Path) -> None:
    """Write ``topology.json`` (atomically) into the results folder ``out_dir``."""
    from twin.results import write_json_atomic

    write_json_atomic(feeder_topology(net), Path(out_dir) / "topology.json")
