"""How long `dmboot` takes to start, as a ratio to `python -c pass` measured in the same run.

Each command runs ``--runs`` times in a fresh interpreter (interleaved with the
baseline, so a busy moment of the shared machine hits both); the table gives the
median wall time, the median CPU time of the child (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)``), and both as ratios to the baseline's.
The data directory is a fresh, uninitialised temporary one: the commands timed are the
ones that need no database.

    .venv/bin/python -m bench.cli_start [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

__all__ = ["main"]

COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": ["-c", "pass"],
    "dmboot --version": ["-m", "bootstrap", "--version"],
    "dmboot config show": ["-m", "bootstrap", "config", "show"],
    "dmboot config show --json": ["-m", "bootstrap", "config", "show", "--json"],
    "dmboot --help": ["-m", "bootstrap", "--help"],
    "dmboot cert --help": ["-m", "bootstrap", "cert", "--help"],
}
BASELINE = "python -c pass (baseline)"


def _once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
        env |= {"DMBOOT_DATA_DIR": os.path.join(folder, "data"), "COLUMNS": "100"}
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
        for args in COMMANDS.values():  # warm-up: bytecode caches, page cache
            _once(args, env)
        for _ in range(options.runs):
            for name, args in COMMANDS.items():
                samples[name].append(_once(args, env))
    wall = {n: statistics.median(w for w, _ in s) for n, s in samples.items()}
    cpu = {n: statistics.median(c for _, c in s) for n, s in samples.items()}
    print(f"# cores={os.cpu_count()} runs={options.runs} python={sys.version.split()[0]}")  # noqa: T201
    print(f"{'command':30} {'wall ms':>8} {'cpu ms':>8} {'wall/base':>10} {'cpu/base':>9}")  # noqa: T201
    for name in COMMANDS:
        print(f"{name:30} {wall[name] * 1000:8.0f} {cpu[name] * 1000:8.0f} "  # noqa: T201
              f"{wall[name] / wall[BASELINE]:10.1f} {cpu[name] / max(cpu[BASELINE], 1e-3):9.1f}")
    print(json.dumps({"bench": "cli_start", "runs": options.runs,  # noqa: T201
                      "baseline_wall_ms": round(wall[BASELINE] * 1000, 1),
                      "commands": {n: {"wall_ms": round(wall[n] * 1000, 1), "cpu_ms": round(cpu[n] * 1000, 1),
                                       "wall_ratio": round(wall[n] / wall[BASELINE], 2)}
                                   for n in COMMANDS if n != BASELINE}}))


if __name__ == "__main__":
    main()
