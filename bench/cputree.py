"""CPU time of a command's whole process tree, for timings on a shared machine.

Runs the command (its output to ``$OUT`` or /dev/null), samples every process of its tree
every 0.25 s (user + system time; a process's last < 0.25 s before it exits is missed) and
ends with one ``key=value`` line: ``wall_s``, ``cpu_s`` (the tree), ``load_start`` /
``load_end`` (1-min load average) and ``runs_cpu_s`` (``twin compare`` / sweeps: CPU of
each run, the subtree of a forkserver child, named by the ``runs/<name>/`` folder it opens).

    OUT=/tmp/cmp.log .venv/bin/python bench/cputree.py .venv/bin/twin compare \
        scenarios/pilots/*.yaml --workers 2 --out /tmp/cmp
"""

import itertools
import os
import re
import subprocess
import sys
import time

import psutil


def _run_of(q: psutil.Process) -> tuple[int, float] | None:
    """The forkserver child above ``q`` (or ``q`` itself): the run it belongs to."""
    chain = [q, *q.parents()]
    for a, parent in itertools.pairwise(chain):
        if "forkserver" in " ".join(parent.cmdline()) and "forkserver" in " ".join(a.cmdline()):
            return a.pid, a.create_time()
    return None


def main() -> int:
    t0, l0 = time.perf_counter(), os.getloadavg()
    with open(os.environ.get("OUT", "/dev/null"), "w") as out:
        p = subprocess.Popen(sys.argv[1:], stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(p.pid)
        seen: dict[tuple[int, float], float] = {}
        owner: dict[tuple[int, float], tuple[int, float] | None] = {}
        names: dict[tuple[int, float], str] = {}
        while p.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for q in procs:
                try:
                    key = (q.pid, q.create_time())
                    ct = q.cpu_times()
                    seen[key] = ct.user + ct.system
                    if key not in owner:
                        owner[key] = _run_of(q)
                    if owner[key] == key and key not in names:
                        for f in q.open_files():
                            m = re.search(r"/runs/([^/]+)/", f.path)
                            if m:
                                names[key] = m.group(1)
                except psutil.Error:
                    pass
            time.sleep(0.25)
    wall = time.perf_counter() - t0
    per: dict[str, float] = {}
    for key, cpu in seen.items():
        run = owner.get(key)
        if run is not None:
            n = names.get(run, f"pid{run[0]}")
            per[n] = per.get(n, 0.0) + cpu
    runs = ",".join(f"{k}:{v:.1f}" for k, v in sorted(per.items()))
    print(f"rc={p.returncode} wall_s={wall:.1f} cpu_s={sum(seen.values()):.1f} procs={len(seen)} "
          f"load_start={l0[0]:.1f} load_end={os.getloadavg()[0]:.1f} runs_cpu_s={runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
