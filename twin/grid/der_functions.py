"""IEEE 1547-2018 grid-support functions of inverter-based DER: data and pure evaluators.

One control layer for every front: a scenario configures these objects, the controlled
power flow (:mod:`twin.grid.controlled_pf`) solves them with the network, hosting studies and
envelopes use them, and the HIL devices expose them over SunSpec (models 705 volt-var,
706 volt-watt, 712 watt-var, 711 frequency-droop, 704 constant PF / var).

Data (frozen dataclasses, validated on construction with the field path of every error):

* :class:`VoltVar` — reactive power vs voltage, 4 points (1547 Table 8, Category A/B defaults
  by :meth:`VoltVar.category`);
* :class:`WattVar` — reactive power vs active power, 3 points (Table 9);
* :class:`ConstantPowerFactor` — injecting (over-excited) or absorbing (under-excited);
* :class:`ConstantVar` — a fixed reactive power;
* :class:`VoltWatt` — active-power limit vs voltage, 2 points (Table 10);
* :class:`FrequencyWatt` — over/under-frequency droop with dead band (Table 24);
* :class:`DerFunctions` — what one device runs: its ratings, at most one reactive-power
  mode (1547 makes them mutually exclusive), optional volt-watt and frequency-watt.

Evaluators are pure and vectorized over devices: :class:`DerFleet` packs N devices' settings
into arrays once; :meth:`DerFleet.targets` maps (B, N) voltages and available powers to
(B, N) active/reactive set-points; :func:`first_order_lag` moves an output toward its target
with the 1547 open-loop response time (90 % of a step after ``response_time_s``).

Units and signs
---------------
Per unit of the device's ratings: voltages in pu of nominal, reactive power ``q_pu`` in pu of
the apparent-power rating ``s_rated_mva`` (1547 states volt-var and watt-var in % of
nameplate apparent power), active power ``p_pu`` in pu of ``p_rated_mw``. Generator
convention: ``p > 0`` injects (PV producing, battery discharging), ``q > 0`` injects reactive
power (over-excited, capacitive: raises the local voltage), ``q < 0`` absorbs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ConstantPowerFactor",
    "ConstantVar",
    "DerFleet",
    "DerFunctionError",
    "DerFunctions",
    "FrequencyWatt",
    "VoltVar",
    "VoltWatt",
    "WattVar",
    "first_order_lag",
    "piecewise_linear",
]

FloatArray = NDArray[np.float64]
Category = Literal["A", "B"]

# mode codes of the reactive-power function in DerFleet.q_mode
Q_NONE, Q_VOLT_VAR, Q_WATT_VAR, Q_CONST_PF, Q_CONST_VAR = 0, 1, 2, 3, 4
_LN10 = math.log(10.0)


class DerFunctionError(ValueError):
    """Invalid DER function settings; ``errors`` holds ``(field_path, message)`` pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" for p, m in self.errors))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _finite(path: str, values: Sequence[float]) -> list[tuple[str, str]]:
    return [(f"{path}[{i}]", f"must be a finite number, got {v!r}")
            for i, v in enumerate(values) if not (isinstance(v, (int, float)) and math.isfinite(v))]


def _check_len(path: str, values: Sequence[float], n: int) -> list[tuple[str, str]]:
    if len(values) != n:
        return [(path, f"needs exactly {n} breakpoints, got {len(values)}")]
    return _finite(path, values)


def _check_response(path: str, t: float) -> list[tuple[str, str]]:
    if not (math.isfinite(t) and t >= 0):
        return [(_join(path, "response_time_s"), f"must be >= 0 s, got {t!r}")]
    return []


# --------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class VoltVar:
    """Volt-var: ``q_pu`` (pu of S rated) at voltages ``v_pu``; flat beyond the end points.

    1547 requires ``V1 < V2 <= V3 < V4`` and a non-increasing curve (inject below the dead
    band, absorb above). ``v_ref_pu`` shifts every breakpoint (the autonomously adjusting
    reference is not modelled: it stays where it is set).
    """

    v_pu: tuple[float, float, float, float] = (0.92, 0.98, 1.02, 1.08)
    q_pu: tuple[float, float, float, float] = (0.44, 0.0, 0.0, -0.44)
    v_ref_pu: float = 1.0
    response_time_s: float = 5.0

    @classmethod
    def category(cls, cat: Category) -> VoltVar:
        """1547-2018 Table 8 defaults of normal-performance Category A or B."""
        if cat == "A":
            return cls((0.90, 1.00, 1.00, 1.10), (0.25, 0.0, 0.0, -0.25), 1.0, 10.0)
        if cat == "B":
            return cls()
        raise DerFunctionError([("category", f"must be 'A' or 'B', got {cat!r}")])

    def errors(self, path: str = "", *, q_max_pu: float = 1.0) -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        pv, pq = _join(path, "v_pu"), _join(path, "q_pu")
        errs = _check_len(pv, self.v_pu, 4) + _check_len(pq, self.q_pu, 4)
        errs += _check_response(path, self.response_time_s)
        if not (math.isfinite(self.v_ref_pu) and 0.8 <= self.v_ref_pu <= 1.2):
            errs.append((_join(path, "v_ref_pu"), f"must be within 0.8..1.2 pu, got {self.v_ref_pu!r}"))
        if errs:
            return errs
        v, q = self.v_pu, self.q_pu
        if not (v[0] < v[1] <= v[2] < v[3]):
            errs.append((pv, f"must satisfy V1 < V2 <= V3 < V4 (IEEE 1547-2018 Table 8), got {list(v)}"))
        if not (v[0] > 0.5 and v[3] < 1.5):
            errs.append((pv, f"breakpoints must lie within 0.5..1.5 pu, got {list(v)}"))
        if any(q[i] < q[i + 1] for i in range(3)):
            errs.append((pq, f"must be non-increasing in voltage (Q1 >= Q2 >= Q3 >= Q4), got {list(q)}"))
        if v[1] == v[2] and q[1] != q[2]:
            errs.append((pq, "Q2 and Q3 must be equal when V2 == V3 (no vertical step)"))
        for i, x in enumerate(q):
            if abs(x) > q_max_pu + 1e-12:
                errs.append((f"{pq}[{i}]", f"{x} exceeds the device's reactive capability {q_max_pu} pu of S rated"))
        return errs


@dataclass(frozen=True)
class WattVar:
    """Watt-var: ``q_pu`` at active powers ``p_pu`` (pu of P rated), ``P1 < P2 < P3``."""

    p_pu: tuple[float, float, float] = (0.2, 0.5, 1.0)
    q_pu: tuple[float, float, float] = (0.0, 0.0, -0.44)
    response_time_s: float = 10.0

    @classmethod
    def category(cls, cat: Category) -> WattVar:
        """1547-2018 Table 9 defaults (absorption at rated power: 25 % Cat A, 44 % Cat B)."""
        if cat not in ("A", "B"):
            raise DerFunctionError([("category", f"must be 'A' or 'B', got {cat!r}")])
        return cls(q_pu=(0.0, 0.0, -0.25 if cat == "A" else -0.44))

    def errors(self, path: str = "", *, q_max_pu: float = 1.0) -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        pp, pq = _join(path, "p_pu"), _join(path, "q_pu")
        errs = _check_len(pp, self.p_pu, 3) + _check_len(pq, self.q_pu, 3)
        errs += _check_response(path, self.response_time_s)
        if errs:
            return errs
        p = self.p_pu
        if not (0.0 <= p[0] < p[1] < p[2] <= 1.0):
            errs.append((pp, f"must satisfy 0 <= P1 < P2 < P3 <= 1 pu of P rated, got {list(p)}"))
        for i, x in enumerate(self.q_pu):
            if abs(x) > q_max_pu + 1e-12:
                errs.append((f"{pq}[{i}]", f"{x} exceeds the device's reactive capability {q_max_pu} pu of S rated"))
        return errs


@dataclass(frozen=True)
class ConstantPowerFactor:
    """Constant power factor ``pf`` (0 < pf <= 1), ``injecting`` (over-excited) or ``absorbing``."""

    pf: float = 1.0
    excitation: Literal["injecting", "absorbing"] = "absorbing"
    response_time_s: float = 10.0

    def errors(self, path: str = "", *, q_max_pu: float = 1.0) -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        errs = _check_response(path, self.response_time_s)
        if not (isinstance(self.pf, (int, float)) and math.isfinite(self.pf) and 0.0 < self.pf <= 1.0):
            errs.append((_join(path, "pf"), f"must be within (0, 1], got {self.pf!r}"))
        if self.excitation not in ("injecting", "absorbing"):
            errs.append((_join(path, "excitation"), f"must be 'injecting' or 'absorbing', got {self.excitation!r}"))
        return errs


@dataclass(frozen=True)
class ConstantVar:
    """Constant reactive power ``q_pu`` (pu of S rated; > 0 injecting)."""

    q_pu: float = 0.0
    response_time_s: float = 10.0

    def errors(self, path: str = "", *, q_max_pu: float = 1.0) -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        errs = _check_response(path, self.response_time_s)
        if not (math.isfinite(self.q_pu) and abs(self.q_pu) <= q_max_pu + 1e-12):
            errs.append((_join(path, "q_pu"), f"must be within +-{q_max_pu} pu of S rated, got {self.q_pu!r}"))
        return errs


@dataclass(frozen=True)
class VoltWatt:
    """Volt-watt: active-power limit ``p_pu`` (pu of P rated) falling from ``P1`` at ``V1``
    to ``P2`` at ``V2`` (``V1 < V2``, ``P2 <= P1``); no limit below ``V1``."""

    v_pu: tuple[float, float] = (1.06, 1.10)
    p_pu: tuple[float, float] = (1.0, 0.2)
    response_time_s: float = 10.0

    @classmethod
    def category(cls, cat: Category, *, can_absorb: bool = False) -> VoltWatt:
        """1547-2018 Table 10 defaults (same for A and B): P2 = 0.2 (generate only) or 0."""
        if cat not in ("A", "B"):
            raise DerFunctionError([("category", f"must be 'A' or 'B', got {cat!r}")])
        return cls(p_pu=(1.0, 0.0 if can_absorb else 0.2))

    def errors(self, path: str = "", *, p_min_pu: float = 0.0) -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        pv, pp = _join(path, "v_pu"), _join(path, "p_pu")
        errs = _check_len(pv, self.v_pu, 2) + _check_len(pp, self.p_pu, 2)
        errs += _check_response(path, self.response_time_s)
        if errs:
            return errs
        v, p = self.v_pu, self.p_pu
        if not (1.0 <= v[0] < v[1] < 1.5):
            errs.append((pv, f"must satisfy 1.0 <= V1 < V2 < 1.5 pu (IEEE 1547-2018 Table 10), got {list(v)}"))
        if p[1] > p[0]:
            errs.append((pp, f"must be non-increasing in voltage (P2 <= P1), got {list(p)}"))
        for i, x in enumerate(p):
            if not (p_min_pu - 1e-12 <= x <= 1.0 + 1e-12):
                errs.append((f"{pp}[{i}]", f"{x} is outside the device's ratings {p_min_pu}..1 pu of P rated"))
        return errs


@dataclass(frozen=True)
class FrequencyWatt:
    """Frequency droop: beyond the dead band ``db_*_hz`` the active power changes by
    ``p_rated / (k * f_nom)`` per Hz (``k`` = droop, 0.05 = 5 %), from the pre-disturbance
    power, down to the device minimum (over-frequency) or up to what is available
    (under-frequency). 1547-2018 Table 24 defaults."""

    f_nom_hz: float = 50.0
    db_of_hz: float = 0.036
    db_uf_hz: float = 0.036
    k_of: float = 0.05
    k_uf: float = 0.05
    response_time_s: float = 5.0

    def errors(self, path: str = "") -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        errs = _check_response(path, self.response_time_s)
        if self.f_nom_hz not in (50.0, 60.0):
            errs.append((_join(path, "f_nom_hz"), f"must be 50 or 60 Hz, got {self.f_nom_hz!r}"))
        for name in ("db_of_hz", "db_uf_hz"):
            x = getattr(self, name)
            if not (math.isfinite(x) and 0.0 <= x <= 1.0):
                errs.append((_join(path, name), f"must be within 0..1 Hz, got {x!r}"))
        for name in ("k_of", "k_uf"):
            x = getattr(self, name)
            if not (math.isfinite(x) and 0.01 <= x <= 0.1):
                errs.append((_join(path, name), f"droop must be within 0.01..0.1 (1..10 %), got {x!r}"))
        return errs


ReactiveMode = VoltVar | WattVar | ConstantPowerFactor | ConstantVar


@dataclass(frozen=True)
class DerFunctions:
    """The grid-support functions one inverter runs, with its ratings.

    ``q_max_pu``: reactive capability in pu of ``s_rated_mva`` (curves beyond it are errors);
    ``p_min_pu``: lowest active power in pu of ``p_rated_mw`` (0 for PV, -1 for a battery or
    V2G charger that can absorb rated power); ``priority``: on the apparent-power limit,
    ``"reactive"`` keeps Q and reduces P (1547's default for volt-var), ``"active"`` keeps P.
    Raises :class:`DerFunctionError` (every problem, with its field path under ``path``).
    """

    s_rated_mva: float
    p_rated_mw: float | None = None
    reactive: ReactiveMode | None = None
    volt_watt: VoltWatt | None = None
    freq_watt: FrequencyWatt | None = None
    q_max_pu: float = 0.44
    p_min_pu: float = 0.0
    priority: Literal["reactive", "active"] = "reactive"
    path: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        errs = self.errors(self.path)
        if errs:
            raise DerFunctionError(errs)

    @classmethod
    def category(cls, cat: Category, *, s_rated_mva: float, p_rated_mw: float | None = None,
                 can_absorb: bool = False, volt_watt: bool = True, path: str = "") -> DerFunctions:
        """Volt-var (+ volt-watt) with the 1547 defaults of category ``cat``."""
        return cls(s_rated_mva=s_rated_mva, p_rated_mw=p_rated_mw, reactive=VoltVar.category(cat),
                   volt_watt=VoltWatt.category(cat, can_absorb=can_absorb) if volt_watt else None,
                   q_max_pu=0.44, p_min_pu=-1.0 if can_absorb else 0.0, path=path)

    @property
    def p_rated(self) -> float:
        """Active-power rating in MW (``s_rated_mva`` when not given)."""
        return self.s_rated_mva if self.p_rated_mw is None else self.p_rated_mw

    def errors(self, path: str = "") -> list[tuple[str, str]]:
        """Every problem with the field path (empty when valid)."""
        errs: list[tuple[str, str]] = []
        if not (math.isfinite(self.s_rated_mva) and self.s_rated_mva > 0):
            errs.append((_join(path, "s_rated_mva"), f"must be > 0, got {self.s_rated_mva!r}"))
        if self.p_rated_mw is not None and not (
                math.isfinite(self.p_rated_mw) and 0 < self.p_rated_mw <= self.s_rated_mva + 1e-12):
            errs.append((_join(path, "p_rated_mw"), f"must be within (0, s_rated_mva], got {self.p_rated_mw!r}"))
        if not (math.isfinite(self.q_max_pu) and 0 <= self.q_max_pu <= 1):
            errs.append((_join(path, "q_max_pu"), f"must be within 0..1, got {self.q_max_pu!r}"))
        if not (math.isfinite(self.p_min_pu) and -1 <= self.p_min_pu <= 0):
            errs.append((_join(path, "p_min_pu"), f"must be within -1..0, got {self.p_min_pu!r}"))
        if self.priority not in ("reactive", "active"):
            errs.append((_join(path, "priority"), f"must be 'reactive' or 'active', got {self.priority!r}"))
        if errs:
            return errs
        if self.reactive is not None:
            names = {VoltVar: "volt_var", WattVar: "watt_var", ConstantPowerFactor: "constant_pf",
                     ConstantVar: "constant_var"}
            name = names.get(type(self.reactive))
            if name is None:
                errs.append((_join(path, "reactive"), f"unknown reactive-power mode {type(self.reactive).__name__}"))
            else:
                errs += self.reactive.errors(_join(path, name), q_max_pu=self.q_max_pu)
        if self.volt_watt is not None:
            errs += self.volt_watt.errors(_join(path, "volt_watt"), p_min_pu=self.p_min_pu)
        if self.freq_watt is not None:
            errs += self.freq_watt.errors(_join(path, "freq_watt"))
        return errs


# --------------------------------------------------------------------------- evaluators


def piecewise_linear(x: FloatArray, xs: FloatArray, ys: FloatArray) -> FloatArray:
    """Piecewise-linear curves, flat beyond the end points, one curve per device.

    ``x`` (..., N); ``xs``, ``ys`` (N, K) breakpoints with non-decreasing ``xs`` (equal
    neighbours are allowed when their ``ys`` are equal). Returns the shape of ``x``.
    """
    dx = np.diff(xs, axis=1)
    dy = np.diff(ys, axis=1)
    slope = np.divide(dy, dx, out=np.zeros_like(dy), where=dx > 0)
    out = np.broadcast_to(ys[:, 0], x.shape).astype(np.float64, copy=True)
    for k in range(dx.shape[1]):
        out += slope[:, k] * np.clip(x - xs[:, k], 0.0, dx[:, k])
    return out


def first_order_lag(previous: FloatArray, target: FloatArray, *, dt_s: float,
                    response_time_s: FloatArray | float) -> FloatArray:
    """Output after ``dt_s`` of a first-order lag whose step response reaches 90 % at
    ``response_time_s`` (IEEE 1547 open-loop response time; time constant ``T / ln 10``).
    A response time of 0 (or a step much longer) gives the target."""
    t = np.asarray(response_time_s, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        alpha = np.where(t > 0, np.exp(-dt_s * _LN10 / np.where(t > 0, t, 1.0)), 0.0)
    return np.asarray(target + (previous - target) * alpha, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class DerFleet:
    """N devices' functions packed into arrays (built once by :meth:`from_functions`)."""

    s_rated_mva: FloatArray  # (N,)
    p_rated_mw: FloatArray
    q_max_pu: FloatArray
    p_min_pu: FloatArray
    reactive_priority: NDArray[np.bool_]
    q_mode: NDArray[np.int64]  # Q_NONE ... Q_CONST_VAR
    vv_v: FloatArray  # (N, 4) volt-var breakpoints (with v_ref applied)
    vv_q: FloatArray
    wv_p: FloatArray  # (N, 3)
    wv_q: FloatArray
    pf_tan: FloatArray  # (N,) signed tan(acos(pf)): > 0 injecting
    const_q_pu: FloatArray
    vw_on: NDArray[np.bool_]
    vw_v: FloatArray  # (N, 2)
    vw_p: FloatArray
    fw_on: NDArray[np.bool_]
    fw: FloatArray  # (N, 5): f_nom, db_of, db_uf, k_of, k_uf
    q_response_s: FloatArray
    p_response_s: FloatArray

    @property
    def size(self) -> int:
        """Number of devices N."""
        return int(self.s_rated_mva.shape[0])

    @property
    def voltage_dependent(self) -> bool:
        """True when any device's output depends on its terminal voltage."""
        return bool(np.any(self.q_mode == Q_VOLT_VAR) or np.any(self.vw_on))

    def kernel_arrays(self) -> tuple[FloatArray, FloatArray]:
        """The functions as two arrays for the numba kernels (``twin.grid._der_kernels``):
        ``par`` (N, 9) = s_rated_mva, p_rated_mw, q_max_pu, p_min_pu, reactive priority,
        q_mode, pf_tan, const_q_pu, volt-watt on (flags and mode as 0/1/...), and ``curves``
        (N, 3, 2, K) = volt-var, watt-var, volt-watt (x row, y row), each padded to K points
        by repeating its last point (the same piecewise-linear function). Two arrays rather
        than fifteen: every array a kernel function takes costs a reference-count update per
        call, which made one device evaluation ~70 ns instead of ~25 ns."""
        n = self.size
        par = np.stack([self.s_rated_mva, self.p_rated_mw, self.q_max_pu, self.p_min_pu,
                        self.reactive_priority.astype(np.float64), self.q_mode.astype(np.float64), self.pf_tan,
                        self.const_q_pu, self.vw_on.astype(np.float64)], axis=1).reshape(n, 9)
        pairs = ((self.vv_v, self.vv_q), (self.wv_p, self.wv_q), (self.vw_v, self.vw_p))
        k = max(x.shape[1] for x, _ in pairs)
        curves = np.empty((n, 3, 2, k))
        for c, (x, y) in enumerate(pairs):
            for r, a in enumerate((x, y)):
                curves[:, c, r, : a.shape[1]] = a
                curves[:, c, r, a.shape[1]:] = a[:, -1:]
        return np.ascontiguousarray(par, dtype=np.float64), curves

    @classmethod
    def from_functions(cls, functions: Sequence[DerFunctions]) -> DerFleet:
        """Pack the settings of ``functions`` (already validated) into arrays."""
        n = len(functions)
        z = np.zeros
        vv_v, vv_q = np.tile([0.9, 1.0, 1.0, 1.1], (n, 1)), z((n, 4))
        wv_p, wv_q = np.tile([0.0, 0.5, 1.0], (n, 1)), z((n, 3))
        vw_v, vw_p = np.tile([1.5, 1.6], (n, 1)), np.ones((n, 2))
        fw = np.tile([50.0, 0.036, 0.036, 0.05, 0.05], (n, 1))
        q_mode = z(n, dtype=np.int64)
        pf_tan, cq = z(n), z(n)
        q_resp, p_resp = z(n), z(n)
        vw_on, fw_on = z(n, dtype=bool), z(n, dtype=bool)
        for i, f in enumerate(functions):
            r = f.reactive
            if isinstance(r, VoltVar):
                q_mode[i] = Q_VOLT_VAR
                vv_v[i] = np.asarray(r.v_pu) * r.v_ref_pu
                vv_q[i] = r.q_pu
            elif isinstance(r, WattVar):
                q_mode[i] = Q_WATT_VAR
                wv_p[i], wv_q[i] = r.p_pu, r.q_pu
            elif isinstance(r, ConstantPowerFactor):
                q_mode[i] = Q_CONST_PF
                sign = 1.0 if r.excitation == "injecting" else -1.0
                pf_tan[i] = sign * math.tan(math.acos(r.pf))
            elif isinstance(r, ConstantVar):
                q_mode[i] = Q_CONST_VAR
                cq[i] = r.q_pu
            if r is not None:
                q_resp[i] = r.response_time_s
            if f.volt_watt is not None:
                vw_on[i] = True
                vw_v[i], vw_p[i] = f.volt_watt.v_pu, f.volt_watt.p_pu
                p_resp[i] = f.volt_watt.response_time_s
            if f.freq_watt is not None:
                fw_on[i] = True
                w = f.freq_watt
                fw[i] = (w.f_nom_hz, w.db_of_hz, w.db_uf_hz, w.k_of, w.k_uf)
                p_resp[i] = max(p_resp[i], w.response_time_s)
        return cls(
            s_rated_mva=np.array([f.s_rated_mva for f in functions], dtype=np.float64),
            p_rated_mw=np.array([f.p_rated for f in functions], dtype=np.float64),
            q_max_pu=np.array([f.q_max_pu for f in functions], dtype=np.float64),
            p_min_pu=np.array([f.p_min_pu for f in functions], dtype=np.float64),
            reactive_priority=np.array([f.priority == "reactive" for f in functions], dtype=bool),
            q_mode=q_mode, vv_v=vv_v, vv_q=vv_q, wv_p=wv_p, wv_q=wv_q, pf_tan=pf_tan,
            const_q_pu=cq, vw_on=vw_on, vw_v=vw_v, vw_p=vw_p, fw_on=fw_on, fw=fw,
            q_response_s=q_resp, p_response_s=p_resp,
        )

    # ----------------------------------------------------------------- pure evaluators

    def p_limit_mw(self, vm_pu: FloatArray, p_avail_mw: FloatArray,
                   freq_hz: FloatArray | float | None = None) -> FloatArray:
        """Active power (generator convention) after frequency-watt and volt-watt.

        ``p_avail_mw`` (B, N) is what the device would do unconstrained (PV: available
        power; battery: its schedule, which may be negative); ``freq_hz`` (B,), (B, 1) or scalar.
        Volt-watt caps it at ``P(V)``; frequency-watt moves it by the droop, within
        ``p_min_pu * p_rated`` and (PV) the available power.
        """
        p = np.asarray(p_avail_mw, dtype=np.float64)
        p_min = self.p_min_pu * self.p_rated_mw
        if freq_hz is not None and self.fw_on.any():
            f = np.asarray(freq_hz, dtype=np.float64)
            f = f[:, None] if f.ndim == 1 else f  # (B,) -> (B, 1); (B, 1) as given
            fn, dbo, dbu, ko, ku = (self.fw[:, k] for k in range(5))
            over = np.maximum(f - (fn + dbo), 0.0) / (fn * ko)
            under = np.maximum((fn - dbu) - f, 0.0) / (fn * ku)
            # a generation-only device cannot rise above what is available
            up_room = np.where(self.p_min_pu < 0, self.p_rated_mw, p)
            p_f = np.clip(p - over * self.p_rated_mw + under * self.p_rated_mw, p_min, np.maximum(up_room, p))
            p = np.where(self.fw_on, p_f, p)
        if self.vw_on.any():
            cap = piecewise_linear(np.asarray(vm_pu, dtype=np.float64), self.vw_v, self.vw_p) * self.p_rated_mw
            p = np.where(self.vw_on, np.maximum(np.minimum(p, cap), p_min), p)
        return np.asarray(p, dtype=np.float64)

    def q_target_mvar(self, vm_pu: FloatArray, p_mw: FloatArray) -> FloatArray:
        """Reactive power (generator convention) of the reactive-power mode, before the
        apparent-power limit (:meth:`limit_apparent`)."""
        vm = np.asarray(vm_pu, dtype=np.float64)
        p = np.asarray(p_mw, dtype=np.float64)
        q_pu = np.zeros(np.broadcast_shapes(vm.shape, p.shape))
        m = self.q_mode
        if np.any(m == Q_VOLT_VAR):
            q_pu = np.where(m == Q_VOLT_VAR, piecewise_linear(vm, self.vv_v, self.vv_q), q_pu)
        if np.any(m == Q_WATT_VAR):
            q_pu = np.where(m == Q_WATT_VAR, piecewise_linear(p / self.p_rated_mw, self.wv_p, self.wv_q), q_pu)
        if np.any(m == Q_CONST_VAR):
            q_pu = np.where(m == Q_CONST_VAR, self.const_q_pu, q_pu)
        q = q_pu * self.s_rated_mva
        if np.any(m == Q_CONST_PF):
            q = np.where(m == Q_CONST_PF, np.abs(p) * self.pf_tan, q)
        q_cap = self.q_max_pu * self.s_rated_mva
        return np.asarray(np.clip(q, -q_cap, q_cap), dtype=np.float64)

    def limit_apparent(self, p_mw: FloatArray, q_mvar: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Fit ``(p, q)`` into ``s_rated``: reactive priority cuts P, active priority cuts Q."""
        s = self.s_rated_mva
        q_r = np.clip(q_mvar, -s, s)
        p_room = np.sqrt(np.maximum(s * s - q_r * q_r, 0.0))
        p_r = np.clip(p_mw, -p_room, p_room)
        p_a = np.clip(p_mw, -s, s)
        q_room = np.sqrt(np.maximum(s * s - p_a * p_a, 0.0))
        q_a = np.clip(q_mvar, -q_room, q_room)
        pri = self.reactive_priority
        return (np.asarray(np.where(pri, p_r, p_a), dtype=np.float64),
                np.asarray(np.where(pri, q_r, q_a), dtype=np.float64))

    def targets(self, vm_pu: FloatArray, p_avail_mw: FloatArray,
                freq_hz: FloatArray | float | None = None) -> tuple[FloatArray, FloatArray]:
        """Steady-state ``(p_mw, q_mvar)`` (B, N) of every device at terminal voltages
        ``vm_pu`` (B, N): frequency-watt and volt-watt on P, the reactive mode on Q, then the
        apparent-power limit."""
        p = self.p_limit_mw(vm_pu, p_avail_mw, freq_hz)
        q = self.q_target_mvar(vm_pu, p)
        return self.limit_apparent(p, q)
