"""Shared page furniture: which folder and run a page shows, headers, empty-data messages.

The folder comes from ``--dir`` (``twin dashboard DIR`` passes it) or ``TWIN_RUN_DIR``. On a
sweep or comparison folder the sidebar picks one run (``?run=<run_id>`` in the URL, so a run's pages can
be linked); the run pages then show ``DIR/runs/<run_id>``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import twindash as td

from twin.lifecycle import effective_status

__all__ = ["RunContext", "base_folder", "no_data", "page_header", "run_context", "select_run"]

_RUN_KEY = "twin_selected_run"
_URL_KEY = "twin_run_in_url"


def base_folder() -> Path:
    """The folder the dashboard was started on."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dir", type=Path, default=None)
    args, _ = parser.parse_known_args()
    if args.dir is not None:
        return args.dir
    return Path(os.environ.get("TWIN_RUN_DIR", "results/quickstart"))


@dataclass(frozen=True)
class RunContext:
    """What a run page shows: the run folder, its manifest and KPIs (either may be None)."""

    folder: Path
    manifest: dict[str, Any] | None
    kpis: dict[str, Any] | None
    label: str

    @property
    def scenario(self) -> dict[str, Any]:
        return (self.manifest or {}).get("scenario") or {}

    @property
    def interval_s(self) -> int:
        m = self.manifest or {}
        return int(m.get("interval_s") or self.scenario.get("market", {}).get("interval_s") or 900)


def select_run(*, sweep_dir: Path) -> str | None:
    """Sidebar choice of one run of a sweep or comparison, kept in the URL as ``?run=``."""
    runs = td.list_runs(sweep_dir=sweep_dir)
    if not runs:
        return None
    wanted = st.query_params.get("run")
    # a ?run= the app did not write itself (a link, an edited URL) picks the run; otherwise
    # the sidebar choice wins and is mirrored into the URL
    if wanted in runs and wanted != st.session_state.get(_URL_KEY):
        st.session_state[_RUN_KEY] = wanted
    if st.session_state.get(_RUN_KEY) not in runs:
        st.session_state[_RUN_KEY] = runs[0]
    choice = st.sidebar.selectbox("Run of this folder", options=runs, key=_RUN_KEY,
                                  help="The run pages (Overview … HIL) show this run.")
    if wanted != choice:
        st.query_params["run"] = choice
    st.session_state[_URL_KEY] = choice
    return choice


def _run_dir(*, base: Path, kind: str, run_id: str) -> str:
    """A run's folder below ``base``: ``runs/<run_id>``, or the ``run_dir`` a comparison's
    row gives (a scenario name need not be a folder name)."""
    if kind == "compare":
        rows = td.read_table(folder=base, name="compare", columns=("scenario", "run_dir"),
                             filters=(("scenario", "==", run_id),))
        if rows is not None and "run_dir" in rows.columns and len(rows) and rows["run_dir"].iloc[0]:
            rel = str(rows["run_dir"].iloc[0])
            if (base / rel).resolve().is_relative_to(base.resolve()):  # stay inside the folder
                return rel
    return f"runs/{run_id}"


def run_context() -> RunContext | None:
    """The run the run pages show; writes a message and returns None when there is none."""
    folder = base_folder()
    kind = td.folder_kind(folder=folder)
    if kind == "missing":
        st.error(f"No results folder at {folder} (manifest.json missing, and no kpis.parquet or "
                 "runs/ of a sweep, no compare.parquet of a comparison). Run `twin run SCENARIO --out DIR` first.")
        return None
    label = folder.name
    if kind in ("sweep", "compare"):
        what = "sweep" if kind == "sweep" else "comparison"
        run_id = st.session_state.get(_RUN_KEY)
        if run_id is None:
            st.info(f"The {what} at {folder} has no runs yet.")
            return None
        folder = folder / _run_dir(base=folder, kind=kind, run_id=str(run_id))
        label = f"run {run_id} of {what} {base_folder().name}"
        if not (folder / "manifest.json").is_file():
            st.warning(f"Run {run_id} has no results folder yet ({folder} has no manifest.json): "
                       "it has not started, or failed before writing anything. "
                       f"The {what.capitalize()} page shows its status and error.")
            return None
    manifest = td.read_json(path=folder / "manifest.json")
    kpis = td.read_json(path=folder / "kpis.json")
    if not (folder / "manifest.json").is_file() and (folder / "cases.parquet").is_file():
        manifest = {"scenario_name": (kpis or {}).get("scenario", folder.name), "status": "study",
                    "scenario_hash": (kpis or {}).get("scenario_hash", ""), "study": "resilience"}
    if not (folder / "manifest.json").is_file() and (folder / "feeder_hosting.parquet").is_file():
        manifest = {"scenario_name": folder.name, "status": "study", "scenario_hash": "", "study": "hosting"}
    if not isinstance(manifest, dict):
        st.error(f"{folder / 'manifest.json'} is not readable JSON (is a run still starting?).")
        return None
    # a `running` manifest whose process is gone is shown as crashed (twin/lifecycle.py)
    manifest = {**manifest, "status": effective_status(manifest)}
    st.session_state["_corrupt_reported"] = set()
    for name, error in td.corrupt_tables(folder=folder).items():
        td.report_corrupt(folder / name, error)
    return RunContext(folder=folder, manifest=manifest,
                      kpis=kpis if isinstance(kpis, dict) else None, label=label)


def page_header(*, title: str, ctx: RunContext | None) -> None:
    st.title(title)
    if ctx is not None and ctx.manifest is not None:
        m = ctx.manifest
        st.caption(f"{m.get('scenario_name', '?')} · {ctx.label} · status {m.get('status', '?')} · "
                   f"seed {m.get('seed', '?')} · scenario {str(m.get('scenario_hash', ''))[:12]}")


def no_data(*, what: str, folder: Path, hint: str) -> None:
    """The one way a page says a table is not in this folder."""
    st.info(f"No {what} in this folder ({folder}). {hint}")


def hours(*, seconds: Any) -> Any:
    """Seconds since scenario start -> hours (arrays or scalars)."""
    return seconds / 3600.0
