"""How long `queue-runner status` takes on the project's queue, end to end: a fresh process,
as people and agents call it. Prints the figures; the target is under 150 ms.

    python benchmarks/bench_queue_status.py [--runs N]

The human variant writes its table to a pseudo-terminal, as it would for a person (colours,
terminal width); the JSON variant writes to a pipe, as it would for an agent. Each variant runs
N times after one warm-up; read min and median (the max mostly measures whatever else the
machine was doing). Python's bytecode cache is on, as on any normal install:
PYTHONDONTWRITEBYTECODE is dropped from the environment, so the warm-up writes
queue_runner/__pycache__ (with it set, every run compiles queue_runner again)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 150.0


def env() -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    values.setdefault("COLUMNS", "160")
    return values


def command() -> list[str]:
    """The installed console script when it imports queue_runner, else `python -m`."""
    script = Path(sys.executable).parent / "queue-runner"
    if script.exists():
        probe = subprocess.run([str(script), "--help"], capture_output=True, cwd=ROOT, env=env(), check=False)
        if probe.returncode == 0:
            return [str(script)]
    return [sys.executable, "-m", "queue_runner"]


def run_on_pipe(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, check=True)
    return (time.perf_counter() - start) * 1000


def run_on_terminal(argv: list[str]) -> float:
    """stderr on a pseudo-terminal, drained by a thread so the child never blocks on it."""
    import pty

    master, slave = pty.openpty()

    def drain() -> None:
        while True:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    reader = threading.Thread(target=drain)
    reader.start()
    code = child.wait()
    elapsed = (time.perf_counter() - start) * 1000
    reader.join()
    os.close(master)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return elapsed


def measure(run: object, argv: list[str], runs: int) -> list[float]:
    assert callable(run)
    run(argv)  # warm-up: file cache, bytecode cache
    return [run(argv) for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    base = command()
    terminal = run_on_terminal if sys.platform != "win32" else run_on_pipe
    variants = [
        ("status, table on a terminal", terminal, [*base, "status"]),
        ("status --json, on a pipe", run_on_pipe, [*base, "status", "--json"]),
        ("python -c pass (interpreter floor)", run_on_pipe, [sys.executable, "-c", "pass"]),
    ]
    print(f"queue-runner status on {ROOT / 'BACKEND_EXECUTION_QUEUE.md'}, {args.runs} runs each")
    print(f"command: {' '.join(base)}")
    for label, run, argv in variants:
        times = measure(run, argv, args.runs)
        print(f"  {label:36} min {min(times):6.1f} ms   median {statistics.median(times):6.1f} ms   "
              f"max {max(times):6.1f} ms")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"target: status under {TARGET_MS:.0f} ms (1-minute load average after measuring: {load:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
