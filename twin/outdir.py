"""A safe ``--out`` folder: never mix two runs in one folder, never write where we cannot.

:func:`prepare_out_dir` is what ``twin run`` calls before it writes anything:

* a path naming a file, or a folder that cannot be created or written, is a bad input;
* an empty or new folder is used as it is;
* a folder holding a run of the *same* scenario (same scenario hash) is cleared and rerun
  (``make demo`` twice), unless that run's process is still writing to it, or it stopped
  with a resume checkpoint (``twin run --resume`` continues it; ``--force`` starts over);
* a folder holding a complete run of the same scenario *file* whose content (or the twin's
  spec defaults) changed since is cleared and rerun as well: it is what ``make demo`` after an
  upgrade means (a stopped, resumable run of it is still kept: resume cannot continue it);
* a folder holding another run (another scenario hash), or files that are not a run, is
  refused unless ``--force``, which clears it first (a folder without any twin run is never
  cleared, ``--force`` or not).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twin.errors import TwinError
from twin.lifecycle import effective_status

__all__ = ["OutDirError", "prepare_out_dir"]


class OutDirError(TwinError):
    """The ``--out`` folder cannot be used (a bad input: exit 2)."""


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _clear(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _check_writable(folder: Path, flag: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".twin-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutDirError(f"{flag} {folder}: cannot write there ({exc.strerror or exc})") from exc


def _same_file(recorded: object, scenario_file: str | None) -> bool:
    if not recorded or not scenario_file:
        return False
    try:
        return Path(str(recorded)).resolve() == Path(scenario_file).resolve()
    except OSError:
        return False


def prepare_out_dir(out: Path, *, scenario_hash: str, force: bool = False,
                    flag: str = "--out", scenario_file: str | None = None) -> None:
    """Make ``out`` ready for a new run of the scenario with ``scenario_hash`` (module doc)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{flag} {out}: is a file, not a folder; give a folder for the results")
    _check_writable(out, flag)
    if any(p for p in out.iterdir() if not p.name.startswith(".twin-probe-")):
        manifest = _read_manifest(out / "manifest.json")
        if manifest is None:
            raise OutDirError(
                f"{flag} {out}: the folder is not empty and holds no twin run (no readable "
                "manifest.json); give a new or empty folder")
        if effective_status(manifest) == "running":
            proc = manifest.get("process") or {}
            raise OutDirError(
                f"{flag} {out}: another twin run (pid {proc.get('pid', '?')} on "
                f"{proc.get('host', '?')}) is still writing to this folder")
        other = str(manifest.get("scenario_hash", "?"))
        rerun_of_file = (other != scenario_hash
                         and _same_file(manifest.get("scenario_file"), scenario_file)
                         and effective_status(manifest) == "complete")
        if other != scenario_hash and not force and not rerun_of_file:
            raise OutDirError(
                f"{flag} {out}: holds another run (scenario "
                f"{manifest.get('scenario_name', '?')!r}, hash {other[:12]}, run id "
                f"{manifest.get('run_id', '?')}); this scenario's hash is {scenario_hash[:12]}. "
                "Give another folder, or add --force to clear it first")
        status = effective_status(manifest)
        if not force and status != "complete" and (out / "checkpoint.json").is_file():
            raise OutDirError(
                f"{flag} {out}: holds a stopped run of this scenario (status {status}, stopped "
                f"at t = {manifest.get('stopped_at_time_s')} s) that can be resumed: "
                f"`twin run --resume {out}`; add --force to start over")
        try:
            _clear(out)
        except OSError as exc:
            raise OutDirError(f"{flag} {out}: cannot clear it ({exc})") from exc
