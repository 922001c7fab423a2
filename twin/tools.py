"""Where the twin finds what it does not ship as Python: Anvil, solc, its dashboards, a cache.

Anvil and solc are looked up, in order, where ``TWIN_ANVIL`` / ``TWIN_SOLC`` point, in the
``node_modules`` of the source checkout (``make setup``) or of the current folder
(``npm install @foundry-rs/anvil solc``), then on ``PATH`` (``anvil`` from Foundry;
``solcjs`` or a native ``solc``). When none is there the error says how to get them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from twin.errors import TwinError

__all__ = [
    "Solc",
    "ToolMissing",
    "cache_dir",
    "dashboard_app",
    "find_anvil",
    "find_solc",
    "regression_dir",
    "source_root",
]

HOW_TO_GET = (
    "in a source checkout run `make setup`; otherwise run `npm install @foundry-rs/anvil solc` "
    "in the current folder, install Foundry (https://getfoundry.sh, puts `anvil` on PATH), or "
    "point TWIN_ANVIL / TWIN_SOLC at the binaries"
)


class ToolMissing(TwinError):
    """Anvil, solc or the dashboards cannot be found (the message says how to get them)."""


def source_root() -> Path:
    """The folder above the ``twin`` package (the repository root in a source checkout)."""
    return Path(__file__).resolve().parents[1]


def _node_modules() -> list[Path]:
    out = []
    for base in (source_root(), Path.cwd()):
        nm = base / "node_modules"
        if nm.is_dir() and nm not in out:
            out.append(nm)
    return out


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ToolMissing(f"{var}={value}: no such file")
    return path


def find_anvil(node_modules: Path | None = None) -> Path:
    """The Anvil binary (module docstring for the search order)."""
    env = _env_path("TWIN_ANVIL")
    if env is not None:
        return env
    for nm in [node_modules] if node_modules is not None else _node_modules():
        for candidate in sorted((nm / "@foundry-rs").glob("anvil-*/bin/anvil")):
            if os.access(candidate, os.X_OK):
                return candidate
        shim = nm / ".bin" / "anvil"
        if shim.exists():
            return shim
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ToolMissing(f"Anvil not found (TWIN_ANVIL, node_modules, PATH): {HOW_TO_GET}")


@dataclass(frozen=True)
class Solc:
    """A Solidity compiler speaking ``--standard-json``: its command and version string."""

    command: tuple[str, ...]
    version: str


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolMissing("`node` is not on PATH (solc-js needs Node.js >= 18): install it, or "
                          "point TWIN_SOLC at a native solc binary")
    return node


def _solc_js(path: Path) -> Solc:
    meta = path.parent / "package.json"
    try:
        version = json.loads(meta.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        version = "unknown"
    return Solc(command=(_node(), str(path)), version=f"solc-js {version}")


def _solc_native(path: Path) -> Solc:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolMissing(f"cannot run {path}: {exc}") from exc
    version = (out.strip().splitlines() or ["unknown"])[-1].replace("Version: ", "")
    return Solc(command=(str(path),), version=f"solc {version}")


def find_solc(node_modules: Path | None = None) -> Solc:
    """The Solidity compiler (module docstring for the search order)."""
    env = _env_path("TWIN_SOLC")
    if env is not None:
        return _solc_js(env) if env.suffix == ".js" else _solc_native(env)
    for nm in [node_modules] if node_modules is not None else _node_modules():
        if (nm / "solc" / "solc.js").is_file():
            return _solc_js(nm / "solc" / "solc.js")
    for name in ("solcjs", "solc"):
        found = shutil.which(name)
        if found:
            return _solc_native(Path(found)) if name == "solc" else \
                Solc(command=(found,), version=f"solcjs {found}")
    raise ToolMissing(f"solc not found (TWIN_SOLC, node_modules, PATH): {HOW_TO_GET}")


def cache_dir() -> Path:
    """``.cache`` of a source checkout, else ``$XDG_CACHE_HOME/gridtwin`` (compiled contracts)."""
    root = source_root()
    if (root / "pyproject.toml").is_file() and os.access(root, os.W_OK):
        return root / ".cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gridtwin"


def _data_dir(name: str) -> Path | None:
    """``name`` shipped with the package (``twin/_data/name``) or of a source checkout."""
    for candidate in (Path(__file__).resolve().parent / "_data" / name, source_root() / name):
        if candidate.is_dir():
            return candidate
    return None


def dashboard_app() -> Path:
    """The Streamlit app's entry file."""
    folder = _data_dir("dashboards")
    if folder is None or not (folder / "app.py").is_file():
        raise ToolMissing("the dashboards are not installed with this package (no "
                          "dashboards/app.py); reinstall gridtwin with `pip install .`")
    return folder / "app.py"


def regression_dir() -> Path:
    """The regression cases shipped with the package (``scenarios/regression``)."""
    folder = _data_dir("scenarios")
    return (folder / "regression") if folder is not None else Path("scenarios/regression")
