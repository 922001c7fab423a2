"""PV and EV hosting capacity: quasi-static time series over many placements, with and without controls.

``HostingInputs.kind`` says what is placed: ``"pv"`` (a PV sgen per candidate bus, the
controls apply) or ``"ev"`` (a home charger per candidate bus, added to a load row of that
bus; ``pv_pu`` is then the chargers' draw per unit of their rating, one column per
candidate; no inverter functions: ``controls`` must be ``{"none": None}``).

Pure core (arrays in, arrays out) over a compiled net:

* a **placement** is a random order of the candidate buses (Monte Carlo sample ``m``, seeded);
  penetration level ``l`` puts a PV of ``pv_kw[bus]`` on the first ``ceil(l * n)`` buses of
  that order, so placements are nested in penetration;
* every (level, sample) pair of a control mode is a lane of the time series; all lanes of a
  chunk of time steps are **one batch** (:class:`twin.grid.pf.BatchPowerFlow`, or
  :class:`twin.grid.controlled_pf.ControlledPowerFlow` with the devices switched on per lane);
* a lane **violates** when, at some step, a bus voltage leaves ``[vm_min_pu, vm_max_pu]``
  (overvoltage / undervoltage) or a line or trafo loading exceeds ``max_loading_percent``
  (thermal) *and* the same limit is fine in the base case without PV at that step (pre-existing
  violations are not charged to PV). Unbalance needs the three-phase engine; on the balanced
  engine it is never the limit (reported as such);
* the **hosting capacity** of a sample is the total PV (kW) of the highest level below the
  first violating level (0 when the first level violates), its **limiting violation** the kind
  that occurred first (ties: overvoltage, thermal, undervoltage). Per bus, the hosting capacity
  is the largest PV at that bus alone (``bus_sizes_kw``) without violation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from twin.grid.controlled_pf import ControlledPowerFlow, DerDevice
from twin.grid.der_functions import DerFunctions
from twin.grid.pf import BatchPowerFlow

__all__ = ["LIMITS", "HostingInputs", "HostingResult", "run_hosting"]

FloatArray = NDArray[np.float64]
LIMITS = ("none", "overvoltage", "thermal", "undervoltage", "unbalance")
_OV, _TH, _UV = 1, 2, 3
# lanes x devices^2 of the controlled solver's device-space matrices held at once (~40 MB)
_DEVICE_MATRIX_BUDGET = 5_000_000


@dataclass(frozen=True, eq=False)
class HostingInputs:
    """Everything a study needs, in the net's row order. Time series are (T, n)."""

    net: Any
    load_p_mw: FloatArray
    load_q_mvar: FloatArray
    pv_pu: FloatArray  # (T,) PV shape, per unit of peak, or (T, n_cand) one profile per candidate
    sgen_rows: NDArray[np.int64]  # (n_cand,) sgen row of the PV candidate (kind "ev": the load row) at each bus
    pv_kw: FloatArray  # (n_cand,) PV size at each candidate bus
    bus_label: NDArray[np.int64]  # (n_cand,) bus index label of each candidate
    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    max_loading_percent: float = 100.0
    kind: str = "pv"  # "pv": generation at sgen rows; "ev": charging added to load rows


@dataclass(frozen=True, eq=False)
class HostingResult:
    """Per control mode: lanes, per-sample and per-bus hosting capacity."""

    levels: FloatArray
    lanes: dict[str, dict[str, np.ndarray]]  # mode -> columns (level, sample, pv_kw, vm_max_pu, ...)
    feeder: dict[str, dict[str, np.ndarray]]  # mode -> (sample, hosting_kw, limiting)
    bus: dict[str, dict[str, np.ndarray]]  # mode -> (bus, hosting_kw, limiting)
    power_flows: int
    wall_s: float


def _violations(res: Any, base: dict[str, NDArray[np.bool_]], inp: HostingInputs, t_idx: NDArray[np.int64]) -> NDArray[np.int64]:
    """(B,) first violation code of each lane at its step (0 none), new against the base case."""
    vm = res.vm_pu
    load = np.concatenate([res.line_loading_percent, res.trafo_loading_percent], axis=1)
    ov = (np.nanmax(vm, axis=1) > inp.vm_max_pu) & ~base["ov"][t_idx]
    th = (np.nanmax(np.nan_to_num(load), axis=1) > inp.max_loading_percent) & ~base["th"][t_idx]
    uv = (np.nanmin(np.where(vm > 0, vm, np.inf), axis=1) < inp.vm_min_pu) & ~base["uv"][t_idx]
    code = np.where(ov, _OV, np.where(th, _TH, np.where(uv, _UV, 0)))
    code[~res.converged] = _OV  # a diverging flow under high PV: counted as overvoltage
    return np.asarray(code, dtype=np.int64)


def run_hosting(
    inp: HostingInputs,
    *,
    levels: Sequence[float],
    samples: int,
    seed: int,
    controls: dict[str, DerFunctions | None],
    bus_sizes_kw: Sequence[float] = (),
    chunk_lanes: int = 200_000,
    progress: Callable[[int, int], None] | None = None,
) -> HostingResult:
    """Run the study (see the module docstring). ``controls`` maps a mode name to the
    functions every PV inverter runs in it (None: no functions; a ``DerFunctions`` built for a
    1 kW inverter, scaled to each PV's size)."""
    import time

    t0 = time.perf_counter()
    lv = np.asarray(sorted(levels), dtype=np.float64)
    if lv.size == 0 or np.any(lv <= 0) or np.any(lv > 1):
        raise ValueError(f"levels: must be fractions in (0, 1], got {list(levels)}")
    if samples < 1:
        raise ValueError(f"samples: must be >= 1, got {samples}")
    n_t = inp.pv_pu.shape[0]
    n_c = inp.sgen_rows.shape[0]
    if inp.kind not in ("pv", "ev"):
        raise ValueError(f"kind: must be 'pv' or 'ev', got {inp.kind!r}")
    if inp.kind == "ev" and any(fn is not None for fn in controls.values()):
        raise ValueError("controls: EV chargers run no inverter functions here; use the mode 'none' only")
    prof = np.asarray(inp.pv_pu, dtype=np.float64)
    prof2 = prof[:, None] if prof.ndim == 1 else prof  # (T, 1) or (T, n_c)
    if prof2.shape[1] not in (1, n_c):
        raise ValueError(f"pv_pu: expected shape ({n_t},) or ({n_t}, {n_c}), got {prof.shape}")
    solver = BatchPowerFlow(inp.net)
    n_sgen = solver.arrays.sgen_p_mw.shape[0]
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(n_c) for _ in range(samples)])  # (samples, n_c)
    counts = np.maximum(1, np.ceil(lv * n_c).astype(np.int64))
    # on[(level, sample), cand]
    rank = np.empty_like(order)
    rank[np.arange(samples)[:, None], order] = np.arange(n_c)[None, :]
    on = (rank[None, :, :] < counts[:, None, None]).reshape(lv.size * samples, n_c)
    lane_level = np.repeat(np.arange(lv.size), samples)
    lane_sample = np.tile(np.arange(samples), lv.size)
    pv_mw = inp.pv_kw / 1000.0
    total_kw = on @ inp.pv_kw

    # base case (no PV): which limits are already violated at each step
    base_res = solver.solve(load_p_mw=inp.load_p_mw, load_q_mvar=inp.load_q_mvar, sgen_p_mw=np.zeros((1, n_sgen)))
    bl = np.concatenate([base_res.line_loading_percent, base_res.trafo_loading_percent], axis=1)
    base = {"ov": np.nanmax(base_res.vm_pu, axis=1) > inp.vm_max_pu,
            "th": np.nanmax(np.nan_to_num(bl), axis=1) > inp.max_loading_percent,
            "uv": np.nanmin(np.where(base_res.vm_pu > 0, base_res.vm_pu, np.inf), axis=1) < inp.vm_min_pu}
    flows = n_t
    n_c = inp.sgen_rows.shape[0]
    # bus sweeps share the machinery: one extra "placement" per (bus, size)
    sizes = np.asarray(sorted(bus_sizes_kw), dtype=np.float64)
    bus_on = np.repeat(np.eye(n_c, dtype=bool), sizes.size, axis=0)
    bus_kw = np.tile(sizes, n_c)
    n_lane_p = on.shape[0]
    all_on = np.concatenate([on, bus_on]) if sizes.size else on
    all_kw = np.concatenate([np.where(on, pv_mw[None, :], 0.0), bus_on * (bus_kw / 1000.0)[:, None]]) if sizes.size \
        else np.where(on, pv_mw[None, :], 0.0)
    n_lane = all_on.shape[0]
    # steps without PV are the base case in every lane (no new violation): skipped
    day = np.flatnonzero((prof2 > 1e-6).any(axis=1))
    total_work = len(controls) * day.size
    done_work = 0
    lanes: dict[str, dict[str, np.ndarray]] = {}
    feeder: dict[str, dict[str, np.ndarray]] = {}
    bus: dict[str, dict[str, np.ndarray]] = {}
    for mode, fn in controls.items():
        first = np.zeros(n_lane, dtype=np.int64)  # first violation code per lane
        vmax = np.full(n_lane, -np.inf)
        vmin = np.full(n_lane, np.inf)
        lmax = np.full(n_lane, -np.inf)
        cpf = None
        lanes_per_chunk = chunk_lanes
        if fn is not None:  # ratings per unit of each lane's PV size (der_scale)
            devs = [DerDevice("sgen", int(r), _scaled(fn, 1.0)) for r in inp.sgen_rows]
            cpf = ControlledPowerFlow(solver, devices=devs)
            lanes_per_chunk = min(chunk_lanes, max(1, _DEVICE_MATRIX_BUDGET // (n_c * n_c)))
        steps_per_chunk = max(1, lanes_per_chunk // n_lane)
        for c0 in range(0, day.size, steps_per_chunk):
            ts = day[c0:c0 + steps_per_chunk]
            t_idx = np.repeat(ts, n_lane)
            p_dev = (prof2[ts][:, None, :] * all_kw[None, :, :]).reshape(-1, n_c)
            lp, lq = inp.load_p_mw[t_idx], inp.load_q_mvar[t_idx]
            if inp.kind == "ev":  # chargers draw on their bus's load row (unity power factor)
                lp = lp.copy()
                np.add.at(lp.T, inp.sgen_rows, p_dev.T)
                res = solver.solve(load_p_mw=lp, load_q_mvar=lq, sgen_p_mw=np.zeros((1, n_sgen)))
                flows += t_idx.size
            elif cpf is None:
                sg = np.zeros((t_idx.size, n_sgen))
                sg[:, inp.sgen_rows] = p_dev
                res = solver.solve(load_p_mw=lp, load_q_mvar=lq, sgen_p_mw=sg)
                flows += t_idx.size
            else:
                # ratings follow each lane's PV size: scale the 1 kW functions by the size at
                # each bus (all devices at one bus share the size, so one fleet per study)
                r = cpf.solve(der_p_avail_mw=p_dev, der_in_service=np.tile(all_on, (ts.size, 1)),
                              der_scale=_size_scale(all_kw, ts.size, n_c), load_p_mw=lp, load_q_mvar=lq,
                              sgen_p_mw=np.zeros((1, n_sgen)), sgen_q_mvar=np.zeros((1, n_sgen)),
                              tol_pu=1e-3)
                res = r.pf
                flows += int(r.outer_iterations.sum())
            code = _violations(res, base, inp, t_idx).reshape(ts.size, n_lane)
            vm = res.vm_pu.reshape(ts.size, n_lane, -1)
            vmax = np.maximum(vmax, np.nanmax(vm, axis=(0, 2)))
            vmin = np.minimum(vmin, np.nanmin(np.where(vm > 0, vm, np.inf), axis=(0, 2)))
            ld = np.concatenate([res.line_loading_percent, res.trafo_loading_percent], axis=1)
            lmax = np.maximum(lmax, np.nanmax(np.nan_to_num(ld).reshape(ts.size, n_lane, -1), axis=(0, 2)))
            for k in range(ts.size):  # first violation in time order
                new = (first == 0) & (code[k] > 0)
                first[new] = code[k][new]
            done_work += ts.size
            if progress is not None:
                progress(done_work, total_work)
        lanes[mode] = {"level": lv[lane_level], "sample": lane_sample, "pv_kw": total_kw,
                       "n_pv": on.sum(axis=1), "vm_max_pu": vmax[:n_lane_p], "vm_min_pu": vmin[:n_lane_p],
                       "max_loading_percent": lmax[:n_lane_p], "violation": first[:n_lane_p]}
        hc = np.zeros(samples)
        limit = np.zeros(samples, dtype=np.int64)
        f = first[:n_lane_p].reshape(lv.size, samples)
        kw = total_kw.reshape(lv.size, samples)
        for m in range(samples):
            bad = np.flatnonzero(f[:, m] > 0)
            if bad.size == 0:
                hc[m], limit[m] = kw[-1, m], 0
            else:
                j = int(bad[0])
                hc[m] = kw[j - 1, m] if j > 0 else 0.0
                limit[m] = f[j, m]
        feeder[mode] = {"sample": np.arange(samples), "hosting_kw": hc, "limiting": limit}
        if sizes.size:
            fb = first[n_lane_p:].reshape(n_c, sizes.size)
            bh = np.zeros(n_c)
            bl_ = np.zeros(n_c, dtype=np.int64)
            for b in range(n_c):
                bad = np.flatnonzero(fb[b] > 0)
                if bad.size == 0:
                    bh[b] = sizes[-1]
                else:
                    bh[b] = sizes[bad[0] - 1] if bad[0] > 0 else 0.0
                    bl_[b] = fb[b, bad[0]]
            bus[mode] = {"bus": inp.bus_label, "hosting_kw": bh, "limiting": bl_}
    return HostingResult(levels=lv, lanes=lanes, feeder=feeder, bus=bus, power_flows=flows,
                         wall_s=time.perf_counter() - t0)


def _scaled(fn: DerFunctions, p_rated_mw: float) -> DerFunctions:
    """``fn`` at another active-power rating (same per-unit curves)."""
    k = p_rated_mw / fn.p_rated
    return DerFunctions(s_rated_mva=fn.s_rated_mva * k, p_rated_mw=p_rated_mw, reactive=fn.reactive,
                        volt_watt=fn.volt_watt, freq_watt=fn.freq_watt, q_max_pu=fn.q_max_pu,
                        p_min_pu=fn.p_min_pu, priority=fn.priority)


def _size_scale(all_kw: FloatArray, n_steps: int, n_c: int) -> FloatArray:
    """(n_steps * lanes, n_c) PV size (MW) of each device in each lane (1 where off)."""
    s = np.where(all_kw > 0, all_kw, 1.0)
    return np.asarray(np.tile(s, (n_steps, 1)), dtype=np.float64)


def limit_name(code: int) -> str:
    """Name of a violation code."""
    return LIMITS[int(code)] if 0 <= code < len(LIMITS) else "unknown"


def levels_default(n: int = 10) -> list[float]:
    """Penetration levels 1/n .. 1."""
    return [round((i + 1) / n, 6) for i in range(n)]

