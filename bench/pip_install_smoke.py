"""`pip install .` into a fresh virtual environment gives a working `twin` (issue 20, item 5).

Creates a venv with uv (offline: wheels from the uv cache, versions constrained by
requirements.lock so the resolver finds them there; the package's own ranges still apply),
installs this repository non-editable, then, from an empty folder (no source checkout, no
node_modules in sight):

* ``twin --version`` and ``twin validate`` on the quickstart shipped inside the package;
* the dashboards app and the regression cases are found inside the installed package;
* without Anvil anywhere, a chain run stops with one line naming TWIN_ANVIL (exit 1);
* with TWIN_ANVIL / TWIN_SOLC pointing at the repository's node_modules, the quickstart
  runs two market intervals on chain;
* ``twin regress --case quickstart_reference`` on the packaged cases passes.

Run: ``.venv/bin/python bench/pip_install_smoke.py`` (a few minutes; needs the uv cache of
``make setup``). Last line: ``key=value`` figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(str(c) for c in cmd), file=sys.stderr)
    return subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def _check(proc: subprocess.CompletedProcess[str], what: str, code: int = 0) -> None:
    if proc.returncode != code:
        raise SystemExit(f"{what}: exit {proc.returncode} (wanted {code})\n{proc.stdout}\n{proc.stderr}")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="twin-pip-"))
    venv, work = tmp / "venv", tmp / "work"
    work.mkdir()
    t0 = time.perf_counter()
    _check(_run([UV, "venv", "--offline", "--python", sys.executable, venv]), "uv venv")
    _check(_run([UV, "pip", "install", "--offline", "--python", venv / "bin" / "python",
                 "-c", ROOT / "requirements.lock", ROOT]), "pip install .")
    install_s = time.perf_counter() - t0
    twin = venv / "bin" / "twin"
    env = {k: v for k, v in os.environ.items() if k not in {"TWIN_ANVIL", "TWIN_SOLC"}}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"

    _check(_run([twin, "--version"], cwd=work, env=env), "twin --version")
    where = _run([venv / "bin" / "python", "-c",
                  "from twin.tools import dashboard_app, regression_dir; import twin;"
                  "print(dashboard_app()); print(regression_dir()); print(twin.__file__)"],
                 cwd=work, env=env)
    _check(where, "packaged data")
    app, cases, pkg = where.stdout.split()
    assert str(venv) in app and str(venv) in cases and str(venv) in pkg, where.stdout
    quickstart = Path(cases).parent / "quickstart.yaml"
    _check(_run([twin, "validate", quickstart], cwd=work, env=env), "twin validate")

    missing = _run([twin, "run", quickstart, "--out", work / "no-anvil", "--until", "1800",
                    "--no-progress"], cwd=work, env=env)
    _check(missing, "run without Anvil", code=1)
    assert "TWIN_ANVIL" in missing.stderr and "Traceback" not in missing.stderr, missing.stderr

    env_tools = {**env, "TWIN_ANVIL": str(next((ROOT / "node_modules" / "@foundry-rs").glob(
        "anvil-*/bin/anvil"))), "TWIN_SOLC": str(ROOT / "node_modules" / "solc" / "solc.js")}
    t1 = time.perf_counter()
    run = _run([twin, "run", quickstart, "--out", work / "quick", "--until", "1800",
                "--no-progress"], cwd=work, env=env_tools)
    _check(run, "quickstart on chain")
    run_s = time.perf_counter() - t1
    manifest = json.loads((work / "quick" / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest

    t2 = time.perf_counter()
    reg = _run([twin, "regress", "--case", "quickstart_reference", "--out", work / "regress",
                "--workers", "1"], cwd=work, env=env_tools)
    _check(reg, "twin regress (packaged cases)")
    regress_s = time.perf_counter() - t2
    print(reg.stdout.strip().splitlines()[-1])
    print(f"install_s={install_s:.1f} quickstart_2_intervals_s={run_s:.1f} "
          f"regress_case_s={regress_s:.1f} packaged_dashboards=1 packaged_regression=1 "
          f"missing_anvil_message=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
