"""How long `queue-runner status` takes on the project's queue, end to end (a fresh process,
as people and agents call it). Prints the figures; the target is under 150 ms.

    python benchmarks/bench_queue_status.py [--runs N]

Each variant runs N times after one warm-up; min and median are the figures to read (the max
mostly measures whatever else the machine was doing). Python's bytecode cache is on, as on any
normal install: PYTHONDONTWRITEBYTECODE is dropped, so the warm-up writes queue_runner/__pycache__
(with it set, every run compiles queue_runner again, roughly doubling the figure)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 150.0


def command() -> list[str]:
    """The installed console script when it imports queue_runner, else `python -m`."""
    script = Path(sys.executable).parent / "queue-runner"
    if script.exists():
        probe = subprocess.run([str(script), "--help"], capture_output=True, cwd=ROOT, env=env(), check=False)
        if probe.returncode == 0:
            return [str(script)]
    return [sys.executable, "-m", "queue_runner"]


def env() -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return values


def measure(argv: list[str], runs: int) -> list[float]:
    run_env = env()
    subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    base = command()
    variants = [
        ("status (rich table on stderr)", [*base, "status"]),
        ("status --json", [*base, "status", "--json"]),
        ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"]),
    ]
    print(f"queue-runner status on {ROOT / 'BACKEND_EXECUTION_QUEUE.md'}, {args.runs} runs each")
    print(f"command: {' '.join(base)}")
    for label, argv in variants:
        times = measure(argv, args.runs)
        print(f"  {label:36} min {min(times):6.1f} ms   median {statistics.median(times):6.1f} ms   "
              f"max {max(times):6.1f} ms")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"target: status under {TARGET_MS:.0f} ms (load average while measuring: {load:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
