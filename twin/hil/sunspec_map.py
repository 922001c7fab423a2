"""SunSpec register maps built from pysunspec2's model definitions.

A device's map starts with the ``SunS`` marker at Modbus address 40000 (0-based protocol
address, the first base address SunSpec clients scan), then model 1 (common), then the
device's models, then the end marker (ID 0xFFFF, L 0). Point layout, types, access and
scale-factor names come from the JSON model definitions that ship with pysunspec2
(``sunspec2/models/json``), never from hand-typed tables. Every register starts at the
sentinel ("not implemented") value of its point's type; the twin fills the points it
implements.

Encoding follows SunSpec: big-endian registers, multi-register integers most significant
word first, ``value = raw * 10**sf`` for scaled points.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sunspec2 import device as _ss_device

__all__ = [
    "BASE_ADDR",
    "DER_MODELS",
    "DEVICE_MODELS",
    "END_MODEL_ID",
    "GROUP_COUNTS",
    "DeviceKind",
    "ModelBlock",
    "Point",
    "RegisterMap",
    "build_register_map",
    "decode_raw",
    "encode_raw",
    "is_sentinel",
    "sentinel_regs",
]

#: First register of the map (the ``SunS`` marker), 0-based Modbus protocol address.
BASE_ADDR: Final = 40000
SUNS_MARKER: Final = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID: Final = 0xFFFF

DeviceKind = Literal["pv_inverter", "battery", "ev_charger", "meter"]

#: The IEEE 1547 SunSpec DER model set every inverter-based device carries.
DER_MODELS: Final = (701, 702, 703, 704, 705, 706, 707, 708, 709, 710, 711, 712)
#: Models of each device kind after model 1 (713 storage capacity; 714 DC measurements;
#: 715 DER control; 802 battery base model; 213 meter).
DEVICE_MODELS: Final[dict[str, tuple[int, ...]]] = {
    "pv_inverter": (*DER_MODELS, 714, 715),
    "battery": (*DER_MODELS, 713, 714, 715, 802),
    "ev_charger": (*DER_MODELS, 714, 715),
    "meter": (213,),
}
#: Repetitions of each repeating group, by the point that counts them (the point's value
#: in the image): 3 curves (curve 1 the active one, read-only), 4 volt-var points, 2
#: volt-watt points, 3 watt-var points, 4 points per trip curve, 2 trip curve sets, one DC port.
GROUP_COUNTS: Final[dict[int, dict[str, int]]] = {
    705: {"NCrv": 3, "NPt": 4}, 706: {"NCrv": 3, "NPt": 2}, 712: {"NCrv": 3, "NPt": 3},
    707: {"NCrvSet": 2, "NPt": 4}, 708: {"NCrvSet": 2, "NPt": 4}, 709: {"NCrvSet": 2, "NPt": 4},
    710: {"NCrvSet": 2, "NPt": 4}, 711: {"NCtl": 3}, 714: {"NPrt": 1},
}

#: Register count and "not implemented" raw value of each fixed-size SunSpec type.
_TYPES: Final[dict[str, tuple[int, int]]] = {
    "int16": (1, 0x8000), "uint16": (1, 0xFFFF), "count": (1, 0), "acc16": (1, 0),
    "enum16": (1, 0xFFFF), "bitfield16": (1, 0xFFFF), "sunssf": (1, 0x8000), "pad": (1, 0x8000),
    "int32": (2, 0x80000000), "uint32": (2, 0xFFFFFFFF), "acc32": (2, 0),
    "enum32": (2, 0xFFFFFFFF), "bitfield32": (2, 0xFFFFFFFF), "ipaddr": (2, 0),
    "float32": (2, 0x7FC00000),
    "int64": (4, 0x8000000000000000), "uint64": (4, 0xFFFFFFFFFFFFFFFF), "acc64": (4, 0),
    "float64": (4, 0x7FF8000000000000), "eui48": (4, 0), "ipv6addr": (8, 0),
}
_SIGNED: Final = frozenset({"int16", "int32", "int64", "sunssf"})


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a model: absolute address, type and access, as pysunspec2 defines it."""

    model_id: int
    #: group points are dotted, repeated groups carry their 1-based index: "PFWInj.PF",
    #: "Crv[2].Pt[1].V" (curve 2, point 1)
    name: str
    type: str
    addr: int
    size: int
    access: Literal["R", "RW"]
    sf: str | None = None
    units: str | None = None
    mandatory: bool = False
    symbols: frozenset[int] | None = None  # allowed values of enum points

    @property
    def end(self) -> int:
        return self.addr + self.size


@dataclass(frozen=True, slots=True)
class ModelBlock:
    model_id: int
    addr: int  # address of the model's ID register
    length: int  # the L register: registers after ID and L
    points: tuple[Point, ...] = field(repr=False)

    @property
    def end(self) -> int:
        return self.addr + 2 + self.length


def _model_def(model_id: int) -> dict[str, Any]:
    mdef = _ss_device.get_model_def(model_id)
    if mdef is None:  # pragma: no cover - shipped with pysunspec2
        raise KeyError(f"pysunspec2 has no definition of SunSpec model {model_id}")
    return dict(mdef)


def _points(model_id: int, group: dict[str, Any], addr: int, prefix: str) -> tuple[list[Point], int]:
    out: list[Point] = []
    for p in group.get("points", []):
        ptype = p["type"]
        size = int(p.get("size") or _TYPES[ptype][0])
        symbols = p.get("symbols")
        out.append(Point(
            model_id=model_id, name=prefix + p["name"], type=ptype, addr=addr, size=size,
            access="RW" if p.get("access") == "RW" else "R", sf=p.get("sf"), units=p.get("units"),
            mandatory=p.get("mandatory") == "M",
            symbols=frozenset(int(s["value"]) for s in symbols) if symbols and ptype.startswith("enum") else None,
        ))
        addr += size
    for g in group.get("groups", []):
        count = g.get("count", 1) or 1
        if isinstance(count, str):  # repeated: as many times as GROUP_COUNTS says
            n = GROUP_COUNTS.get(model_id, {}).get(count)
            if n is None:
                raise ValueError(f"model {model_id}: no count for repeating group {g['name']} ({count})")
            for i in range(1, n + 1):
                sub, addr = _points(model_id, g, addr, f"{prefix}{g['name']}[{i}].")
                out.extend(sub)
            continue
        if count != 1:
            raise ValueError(f"model {model_id}: group {g['name']} repeats {count} times")
        sub, addr = _points(model_id, g, addr, prefix + g["name"] + ".")
        out.extend(sub)
    return out, addr


def _model_block(model_id: int, addr: int) -> ModelBlock:
    points, end = _points(model_id, _model_def(model_id)["group"], addr, "")
    if points[0].name != "ID" or points[1].name != "L":
        raise ValueError(f"model {model_id}: definition does not start with ID, L")
    return ModelBlock(model_id=model_id, addr=addr, length=end - addr - 2, points=tuple(points))


def sentinel_regs(point: Point) -> list[int]:
    """The registers of ``point`` holding SunSpec's "not implemented" value."""
    if point.type == "string":
        return [0] * point.size
    return _int_to_regs(_TYPES[point.type][1], point.size)


def _int_to_regs(raw: int, size: int) -> list[int]:
    return [(raw >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]


def _regs_to_int(regs: Sequence[int]) -> int:
    v = 0
    for r in regs:
        v = (v << 16) | (r & 0xFFFF)
    return v


def is_sentinel(point: Point, regs: Sequence[int]) -> bool:
    """True when ``regs`` hold the "not implemented" value (NaN) of the point's type."""
    if point.type == "string":
        return all(r == 0 for r in regs)
    if point.type in ("float32", "float64"):
        return math.isnan(_float_from(point, regs))
    raw = _regs_to_int(regs)
    # acc/count/ipaddr types use 0 as "not accumulated"; a written 0 is a valid value.
    return raw == _TYPES[point.type][1] and point.type not in ("acc16", "acc32", "acc64", "count")


def _float_from(point: Point, regs: Sequence[int]) -> float:
    raw = _regs_to_int(regs)
    if point.size == 2:
        return float(struct.unpack(">f", raw.to_bytes(4, "big"))[0])
    return float(struct.unpack(">d", raw.to_bytes(8, "big"))[0])


def decode_raw(point: Point, regs: Sequence[int]) -> int | float | str | None:
    """Raw value of ``point`` (before scaling); None for the sentinel."""
    if len(regs) != point.size:
        raise ValueError(f"{point.name}: expected {point.size} registers, got {len(regs)}")
    if is_sentinel(point, regs):
        return None
    if point.type == "string":
        return b"".join(r.to_bytes(2, "big") for r in regs).rstrip(b"\x00").decode("latin-1")
    if point.type in ("float32", "float64"):
        return _float_from(point, regs)
    raw = _regs_to_int(regs)
    if point.type in _SIGNED and raw >= 1 << (16 * point.size - 1):
        raw -= 1 << (16 * point.size)
    return raw


def raw_range(point: Point) -> tuple[int, int]:
    """Inclusive range of valid raw integers of ``point`` (the sentinel excluded)."""
    bits = 16 * point.size
    if point.type in _SIGNED:
        return -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1
    hi = (1 << bits) - 1
    if point.type.startswith(("acc", "count")):
        return 0, hi
    return 0, hi - 1


def encode_raw(point: Point, raw: int | float | str | None) -> list[int]:
    """Registers of ``point`` holding ``raw`` (None -> sentinel). Raises on overflow."""
    if raw is None:
        return sentinel_regs(point)
    if point.type == "string":
        data = str(raw).encode("latin-1")[: 2 * point.size].ljust(2 * point.size, b"\x00")
        return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if point.type in ("float32", "float64"):
        fmt = ">f" if point.size == 2 else ">d"
        return _int_to_regs(int.from_bytes(struct.pack(fmt, float(raw)), "big"), point.size)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return sentinel_regs(point)
        raw = round(raw)
    lo, hi = raw_range(point)
    if not lo <= int(raw) <= hi:
        raise OverflowError(f"{point.name}: raw value {raw} outside [{lo}, {hi}] of {point.type}")
    return _int_to_regs(int(raw) & ((1 << (16 * point.size)) - 1), point.size)


class RegisterMap:
    """The address layout of one device: marker, model 1, the device's models, end marker.

    The map holds no values; :meth:`initial_image` gives the registers with every point at
    its sentinel and ID/L filled in.
    """

    def __init__(self, model_ids: Iterable[int]) -> None:
        ids = [1, *model_ids]
        if 1 in ids[1:]:
            raise ValueError("model 1 comes first and only once")
        addr = BASE_ADDR + 2
        blocks: list[ModelBlock] = []
        for mid in ids:
            block = _model_block(mid, addr)
            blocks.append(block)
            addr = block.end
        self.blocks: tuple[ModelBlock, ...] = tuple(blocks)
        self.start = BASE_ADDR
        self.end_marker_addr = addr
        self.end = addr + 2  # exclusive
        self._points: dict[tuple[int, str], Point] = {
            (p.model_id, p.name): p for b in blocks for p in b.points
        }
        self._by_addr: dict[int, Point] = {p.addr: p for b in blocks for p in b.points}
        # register address -> the point covering it (for write validation)
        self._cover: dict[int, Point] = {}
        for p in self._by_addr.values():
            for a in range(p.addr, p.end):
                self._cover[a] = p

    @property
    def model_ids(self) -> tuple[int, ...]:
        return tuple(b.model_id for b in self.blocks)

    @property
    def n_regs(self) -> int:
        return self.end - self.start

    def point(self, model_id: int, name: str) -> Point:
        try:
            return self._points[(model_id, name)]
        except KeyError:
            raise KeyError(f"model {model_id} has no point {name!r}") from None

    def has_point(self, model_id: int, name: str) -> bool:
        return (model_id, name) in self._points

    def point_at(self, addr: int) -> Point | None:
        """The point covering register ``addr`` (None for markers and outside the models)."""
        return self._cover.get(addr)

    def points(self) -> Iterable[Point]:
        return self._by_addr.values()

    def contains(self, addr: int, count: int) -> bool:
        return count >= 1 and self.start <= addr and addr + count <= self.end

    def initial_image(self) -> list[int]:
        regs = [0] * self.n_regs
        regs[0:2] = SUNS_MARKER
        for p in self.points():
            regs[p.addr - self.start:p.end - self.start] = sentinel_regs(p)
        for b in self.blocks:
            regs[b.addr - self.start] = b.model_id
            regs[b.addr + 1 - self.start] = b.length
        regs[self.end_marker_addr - self.start] = END_MODEL_ID
        regs[self.end_marker_addr + 1 - self.start] = 0
        return regs


def build_register_map(kind: DeviceKind | str) -> RegisterMap:
    """The SunSpec register map of a device ``kind`` (see :data:`DEVICE_MODELS`)."""
    try:
        models = DEVICE_MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown HIL device kind {kind!r} (known: {sorted(DEVICE_MODELS)})") from None
    return RegisterMap(models)
