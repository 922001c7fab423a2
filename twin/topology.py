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
    geo = net.bus["geo"].tolist() if "geo" in net.bus.columns else None
    points = dict(zip(bus_ids, (_point(g) for g in geo), strict=True)) if geo is not None \
        else dict.fromkeys(bus_ids)
    ln = net.line
    names = ln["name"].tolist() if "name" in ln.columns else [None] * len(ln)
    # column lists, not iterrows: a town feeder has thousands of lines
    lines: list[dict[str, Any]] = [
        {"line": int(i), "from_bus": int(fb), "to_bus": int(tb), "length_km": float(km),
         "in_service": bool(ins), "name": None if nm is None else str(nm)}
        for i, fb, tb, km, ins, nm in zip(ln.index.tolist(), ln.from_bus.tolist(), ln.to_bus.tolist(),
                                          ln.length_km.tolist(), ln.in_service.tolist(), names,
                                          strict=True)
    ]
    tr = net.trafo
    trafos: list[dict[str, Any]] = [
        {"trafo": int(i), "hv_bus": int(hv), "lv_bus": int(lv), "sn_mva": float(sn),
         "in_service": bool(ins)}
        for i, hv, lv, sn, ins in zip(tr.index.tolist(), tr.hv_bus.tolist(), tr.lv_bus.tolist(),
                                      tr.sn_mva.tolist(), tr.in_service.tolist(), strict=True)
    ]
    sw = net.switch
    switches: list[dict[str, Any]] = [
        {"switch": int(i), "bus": int(b), "element": int(el), "et": str(et), "closed": bool(c)}
        for i, b, el, et, c in zip(sw.index.tolist(), sw.bus.tolist(), sw.element.tolist(),
                                   sw.et.tolist(), sw.closed.tolist(), strict=True)
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
        {"bus": b, "name": str(nm), "vn_kv": float(kv), "x": pos[b][0], "y": pos[b][1]}
        for b, nm, kv in zip(bus_ids, net.bus["name"].tolist(), net.bus["vn_kv"].tolist(), strict=True)
    ]
    return {"version": TOPOLOGY_VERSION, "layout": layout, "buses": buses, "lines": lines,
            "trafos": trafos, "switches": switches, "slack_buses": slack}


def write_topology(net: Any, out_dir: Path) -> None:
    """Write ``topology.json`` (atomically) into the results folder ``out_dir``."""
    from twin.results import write_json_atomic

    write_json_atomic(feeder_topology(net), Path(out_dir) / "topology.json", indent=None)
