"""The layout's rules, checked on the source: no import cycle between the twin's packages,
and a pure reference market (docs/architecture.md), modules of at most about 600 lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TWIN = Path(__file__).resolve().parents[1] / "twin"

#: Modules that sit in a package they do not belong to yet, each its own unit here until it
#: moves (the cooperative game and its DSO security check go to twin/games; they import the
#: grid and the scenario, which the reference market must not).
EXCEPTIONS = {"twin.market.game": "twin.games", "twin.market.game_security": "twin.games"}


def _module(path: Path) -> str:
    rel = path.relative_to(TWIN.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _unit(module: str) -> str:
    """A package (``twin.grid``) or a top-level module (``twin.run``)."""
    if module in EXCEPTIONS:
        return EXCEPTIONS[module]
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every ``twin`` module ``path`` imports (at any depth; ``if TYPE_CHECKING:`` skipped)."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for b in node.body for n in ast.walk(b)}
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "twin" or node.module.startswith("twin."):
                # ``from twin.services import assets``: the submodule is what is imported
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if (TWIN.parent / f"{node.module}.{a.name}".replace(".", "/")).exists()]
                out += [(m, node.lineno) for m in subs or [node.module]]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("twin.")]
    return out


def _graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> where (file:line)."""
    g: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(TWIN.rglob("*.py")):
        src = _unit(_module(path))
        for target, line in _imports(path):
            dst = _unit(target)
            if dst != src and dst != "twin":
                g[src][dst].append(f"{path.relative_to(TWIN.parent)}:{line}")
    return g


def _cycles(g: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_twin_packages() -> None:
    g = _graph()
    problems = []
    for comp in _cycles(g):
        edges = [f"  {a} -> {b} ({', '.join(g[a][b][:3])})" for a in comp for b in g[a] if b in comp]
        problems.append(f"cycle {comp}:\n" + "\n".join(edges))
    assert not problems, "\n".join(problems)


def test_the_reference_market_imports_no_outer_layer() -> None:
    """twin/market is the pure reference: nothing of chain, grid, agents, scenario, services."""
    outer = {"twin.chain", "twin.grid", "twin.agents", "twin.scenario", "twin.services",
             "twin.cosim", "twin.hil", "twin.results", "twin.run"}
    g = _graph()
    bad = {dst: where for dst, where in g["twin.market"].items() if dst in outer}
    assert not bad, bad


def test_the_check_sees_a_cycle(tmp_path: Path) -> None:
    """The cycle finder itself: a -> b -> c -> a is one cycle, d -> a none."""
    g = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}
    assert _cycles(g) == [["a", "b", "c"]]


def test_importing_the_kernels_changes_no_process_state() -> None:
    """No side effects at import: the numba layer, OpenMP spinning and malloc are set by
    :func:`twin.runtime.configure` only (called by the CLI and the benchmarks)."""
    import subprocess
    import sys

    code = (
        "import os, numba\n"
        "for k in ('NUMBA_THREADING_LAYER', 'GOMP_SPINCOUNT'): os.environ.pop(k, None)\n"
        "layer = numba.config.THREADING_LAYER\n"
        "import twin.grid, twin.grid.pf, twin.grid.pf3ph, twin.grid._kernels, twin.grid._kernels3ph\n"
        "assert 'NUMBA_THREADING_LAYER' not in os.environ and 'GOMP_SPINCOUNT' not in os.environ\n"
        "assert numba.config.THREADING_LAYER == layer, numba.config.THREADING_LAYER\n"
        "from twin.runtime import configure\n"
        "s = configure(threading='omp', malloc_tune=False)\n"
        "assert (s.threading, s.malloc_tuned) == ('omp', False)\n"
        "assert numba.config.THREADING_LAYER == 'omp' and os.environ['GOMP_SPINCOUNT'] == '30000'\n"
        "try:\n    configure(threading='fast')\nexcept ValueError as e:\n    assert 'fast' in str(e)\n"
        "else:\n    raise AssertionError('no error')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TWIN.parent)
    assert proc.returncode == 0, proc.stderr


#: "No module above about 600 lines" (issue #22): the longest module a newcomer has to read.
MAX_MODULE_LINES = 640


def test_no_module_above_about_600_lines() -> None:
    long = {str(p.relative_to(TWIN.parent)): n for p in sorted(TWIN.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules above {MAX_MODULE_LINES} lines (split them by concern): {long}"
