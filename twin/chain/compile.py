"""Compile the Solidity contracts with solc-js from ``node_modules`` (standard-JSON).

Artifacts (ABI + bytecode of every contract) are keyed by the sha256 of the sources, the
compiler settings and the solc package version, with a provenance header (compiler version,
source hash, settings, key), so a build is reproducible from the pinned sources and compiler.
They are looked up, in order:

1. checked in next to the sources (``<contracts dir>/compiled.json``, written by
   ``make contracts``), used when its key matches: a fresh clone deploys without running solc;
2. cached under ``.cache/solc/<key>.json`` (any other source state, e.g. while editing a
   contract);
3. compiled, and written to the cache.

``tests/chain/test_compiled_artifacts.py`` fails (a hash compare, no compile) when a checked-in
artifact does not match its sources. Nothing is downloaded: solc comes from
``package-lock.json`` (``make setup`` / ``npm install``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.errors import TwinError

if TYPE_CHECKING:
    from twin.tools import Solc

__all__ = [
    "ARTIFACT_FILE",
    "CONTRACTS",
    "CONTRACTS_DIR",
    "REBUILD",
    "Artifact",
    "CompileError",
    "CompiledContracts",
    "compile_contracts",
    "project_root",
    "stale_artifact",
    "write_artifact",
]

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
#: The deployable contracts, in deployment order.
CONTRACTS = ("SettlementToken", "DeviceRegistry", "EnergyMarket")
_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "viaIR": True,
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
_FIX = (
    "run `make setup` (or `npm install` in the project root) to install the pinned solc and Anvil"
)
#: The checked-in compile of a contracts folder, next to its ``*.sol`` files.
ARTIFACT_FILE = "compiled.json"
#: The one command that recompiles every checked-in artifact.
REBUILD = "make contracts"


class CompileError(TwinError):
    """The compiler is missing, failed, or reported errors."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code


@dataclass(frozen=True, slots=True)
class CompiledContracts:
    """Every contract of one compile, plus where it came from."""

    artifacts: dict[str, Artifact]
    compiler_version: str
    source_hash: str
    path: Path  # the cache file

    def __getitem__(self, name: str) -> Artifact:
        return self.artifacts[name]

    def abis(self) -> dict[str, list[dict[str, Any]]]:
        return {n: a.abi for n, a in self.artifacts.items()}


def project_root() -> Path:
    """The repository root (holds ``node_modules`` and ``.cache``)."""
    return Path(__file__).resolve().parents[2]


def _sources(contracts_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(contracts_dir.glob("*.sol"))}


def compile_contracts(
    *,
    contracts_dir: Path = CONTRACTS_DIR,
    node_modules: Path | None = None,
    cache_dir: Path | None = None,
    force: bool = False,
    required: tuple[str, ...] = CONTRACTS,
) -> CompiledContracts:
    """Compile (or load the checked-in or cached artifact of) every ``*.sol`` in ``contracts_dir``; ``required`` names
    the contracts the output must hold (test fixtures compile their own directory).

    Raises :class:`CompileError` naming the fix when node or solc is missing, and listing
    every compiler error otherwise.
    """
    from twin.tools import cache_dir as default_cache_dir

    cache_dir = cache_dir or default_cache_dir() / "solc"
    version = _solc(node_modules).version
    sources = _sources(contracts_dir)
    if not sources:
        raise CompileError(f"no Solidity sources in {contracts_dir}")
    source_hash, key = _key(sources, version)
    shipped = contracts_dir / ARTIFACT_FILE
    if not force and shipped.is_file():
        try:
            if json.loads(shipped.read_text(encoding="utf-8"))["provenance"].get("key") == key:
                return _load(shipped)
        except (OSError, ValueError, KeyError):
            pass  # unreadable checked-in artifact: the cache or the compiler below
    path = cache_dir / f"{key}.json"
    if path.is_file() and not force:
        try:
            return _load(path)
        except (OSError, ValueError, KeyError):
            pass  # corrupt cache entry: recompile
    _write(path, _compile(node_modules, sources, version, source_hash, key, required))
    return _load(path)


def _solc(node_modules: Path | None) -> Solc:
    from twin.tools import ToolMissing, find_solc

    try:
        return find_solc(node_modules)
    except ToolMissing as exc:
        raise CompileError(str(exc)) from exc


def _key(sources: dict[str, str], version: str) -> tuple[str, str]:
    """(sha256 of the sources, the artifact key of sources + settings + compiler)."""
    source_hash = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
    key = hashlib.sha256(
        json.dumps(
            {"sources": source_hash, "settings": _SETTINGS, "compiler": version}, sort_keys=True
        ).encode()
    ).hexdigest()[:24]
    return source_hash, key


def _compile(
    node_modules: Path | None,
    sources: dict[str, str],
    version: str,
    source_hash: str,
    key: str,
    required: tuple[str, ...],
) -> dict[str, Any]:
    output = _run_solc(_solc(node_modules).command, sources)
    artifacts: dict[str, Any] = {}
    for file_contracts in output.get("contracts", {}).values():
        for name, c in file_contracts.items():
            artifacts[name] = {"abi": c["abi"], "bytecode": "0x" + c["evm"]["bytecode"]["object"]}
    missing = [c for c in required if c not in artifacts]
    if missing:
        raise CompileError(f"compiler output lacks {missing}")
    return {
        "provenance": {
            "compiler": version,
            "source_hash": source_hash,
            "sources": sorted(sources),
            "settings": _SETTINGS,
            "key": key,
        },
        "contracts": artifacts,
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_artifact(
    contracts_dir: Path = CONTRACTS_DIR,
    *,
    node_modules: Path | None = None,
    required: tuple[str, ...] = (),
) -> Path:
    """Compile ``contracts_dir`` and write its checked-in artifact (``make contracts``)."""
    sources = _sources(contracts_dir)
    if not sources:
        raise CompileError(f"no Solidity sources in {contracts_dir}")
    version = _solc(node_modules).version
    source_hash, key = _key(sources, version)
    path = contracts_dir / ARTIFACT_FILE
    _write(path, _compile(node_modules, sources, version, source_hash, key, required))
    return path


def stale_artifact(
    contracts_dir: Path = CONTRACTS_DIR, *, node_modules: Path | None = None
) -> str | None:
    """Why the checked-in artifact of ``contracts_dir`` does not match its sources and the
    pinned compiler (a hash compare, no compile), or ``None`` when it matches."""
    path = contracts_dir / ARTIFACT_FILE
    fix = f"run `{REBUILD}` and commit {path.name}"
    if not path.is_file():
        return f"{path}: no checked-in contract artifact; {fix}"
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))["provenance"]
    except (OSError, ValueError, KeyError) as exc:
        return f"{path}: unreadable ({exc}); {fix}"
    sources = _sources(contracts_dir)
    version = _solc(node_modules).version
    source_hash, key = _key(sources, version)
    if prov.get("sources") != sorted(sources) or prov.get("source_hash") != source_hash:
        return (f"{path} is stale: it was compiled from other sources than the *.sol files "
                f"in {contracts_dir} (source hash {str(prov.get('source_hash'))[:12]}, "
                f"sources {source_hash[:12]}); {fix}")
    if prov.get("compiler") != version or prov.get("key") != key:
        return (f"{path} is stale: compiled by {prov.get('compiler')} with other settings or "
                f"compiler than the pinned {version}; {fix}")
    return None


def _run_solc(command: tuple[str, ...], sources: dict[str, str]) -> dict[str, Any]:
    request = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": _SETTINGS,
    }
    # Both ends are files, not pipes: solcjs exits right after writing, which truncates a
    # stdout pipe at 64 KiB; and it reads stdin with readFileSync, which fails with EAGAIN
    # on a pipe the writer has not filled yet (large requests, loaded machines).
    with tempfile.TemporaryFile("w+", encoding="utf-8") as in_file, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as out_file:
        json.dump(request, in_file)
        in_file.seek(0)
        try:
            proc = subprocess.run(
                [*command, "--standard-json"],
                stdin=in_file,
                stdout=out_file,
                stderr=subprocess.PIPE,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompileError(f"running solc-js failed: {exc}; {_FIX}") from exc
        out_file.seek(0)
        out = out_file.read()
    start = out.find("{")  # solcjs may print a notice line before the JSON
    if proc.returncode != 0 or start < 0:
        raise CompileError(
            f"solc-js failed (exit {proc.returncode}): {proc.stderr.strip() or out.strip()}; {_FIX}"
        )
    try:
        result: dict[str, Any] = json.loads(out[start:])
    except json.JSONDecodeError as exc:
        raise CompileError(f"solc-js printed no valid JSON: {exc}") from exc
    errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
    if errors:
        text = "\n".join(e.get("formattedMessage") or e.get("message", "") for e in errors)
        raise CompileError(f"Solidity compile errors:\n{text}")
    return result


#: Contracts whose linked libraries run by DELEGATECALL and emit their events at the
#: contract's address: the libraries' events join the contract's ABI (declared once, in the
#: library, e.g. EnergyMarket's Settled and Curtailed in MarketSettlement).
_LINKED_EVENTS = {"EnergyMarket": ("MarketSettlement",)}


def _with_library_events(contracts: dict[str, Any]) -> dict[str, Any]:
    out = dict(contracts)
    for host, libraries in _LINKED_EVENTS.items():
        if host not in out:
            continue
        abi = list(out[host]["abi"])
        names = {i.get("name") for i in abi if i.get("type") == "event"}
        for lib in libraries:
            for item in out.get(lib, {}).get("abi", []):
                if item.get("type") == "event" and item["name"] not in names:
                    abi.append(item)
                    names.add(item["name"])
        out[host] = {**out[host], "abi": abi}
    return out


def _load(path: Path) -> CompiledContracts:
    doc = json.loads(path.read_text(encoding="utf-8"))
    prov = doc["provenance"]
    return CompiledContracts(
        artifacts={
            name: Artifact(name=name, abi=c["abi"], bytecode=c["bytecode"])
            for name, c in _with_library_events(doc["contracts"]).items()
        },
        compiler_version=prov["compiler"],
        source_hash=prov["source_hash"],
        path=path,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m twin.chain.compile [DIR ...]``: rewrite each folder's checked-in artifact."""
    import sys

    dirs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)] or [CONTRACTS_DIR]
    for d in dirs:
        required = CONTRACTS if d.resolve() == CONTRACTS_DIR else ()
        path = write_artifact(d, required=required)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
