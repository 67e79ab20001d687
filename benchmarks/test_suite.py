"""Wall time of the test command, this checkout against another, side by side.

    python -m benchmarks.test_suite --base /path/to/main-checkout              # warm caches
    python -m benchmarks.test_suite --base /path/to/main-checkout --cold --repeat 2

Runs the other checkout's test command (``--base-command``, default ``python -m pytest -q``)
and this checkout's (``--command``, default the README's ``python -m pytest -q -n auto``)
alternately, each in its own checkout with ``PYTHONPATH`` pointing there, and prints one JSON
line per run: the wall time, the counts pytest reports, and the load average before and after
(other jobs on the machine move the times). ``--cold`` gives every run an empty
``TORCHINDUCTOR_CACHE_DIR`` and ``NUMBA_CACHE_DIR`` (as on a fresh CI machine: the
``torch.compile`` tests compile from scratch, and so do hats' numba kernels); without it both
share the user's caches, warm after the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(checkout: Path, command: str, label: str, cold: bool) -> dict:
    """One run of ``command`` in ``checkout``; its wall time and pytest's counts."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with (
        tempfile.TemporaryDirectory(prefix="inductor-") as cache,
        tempfile.TemporaryDirectory(prefix="numba-") as numba_cache,
    ):
        if cold:
            env["TORCHINDUCTOR_CACHE_DIR"] = cache
            env["NUMBA_CACHE_DIR"] = numba_cache
        args = shlex.split(command)
        if args[0] == "python":
            args[0] = sys.executable  # this interpreter (its virtual environment)
        load = os.getloadavg()
        t0 = time.perf_counter()
        r = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail)}
    return {
        "label": label,
        "command": command,
        "wall_s": round(wall, 1),
        "returncode": r.returncode,
        **counts,
        "inductor_cache": "cold" if cold else "warm",
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu": _cpu(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="the checkout to compare against")
    p.add_argument("--base-label", default="base")
    p.add_argument("--base-command", default="python -m pytest -q")
    p.add_argument("--label", default="this checkout")
    p.add_argument("--command", default="python -m pytest -q -n auto")
    p.add_argument("--repeat", type=int, default=1, help="pairs of runs")
    p.add_argument(
        "--cold", action="store_true", help="empty inductor and numba caches for every run"
    )
    a = p.parse_args(argv)
    for _ in range(a.repeat):
        for checkout, command, label in (
            (a.base.resolve(), a.base_command, a.base_label),
            (ROOT, a.command, a.label),
        ):
            print(json.dumps(run(checkout, command, label, a.cold)), flush=True)


if __name__ == "__main__":
    main()
