"""Helpers for queue_runner's tests: the repository paths, golden files, and a scratch project
(a queue file plus a tiny noxfile with passing, failing and skipping sessions) in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"

SCRATCH_NOXFILE = '''
import os
import pathlib
import signal
import time

import nox

nox.options.default_venv_backend = "none"
HERE = pathlib.Path(__file__).parent


def mark(name):
    with open(HERE / "ran.txt", "a", encoding="utf-8") as handle:
        handle.write(name + "\\n")


@nox.session(tags=["S001", "S008", "S009"])
def passing(session):
    mark("passing")


@nox.session(name="also-passing", tags=["S010"])
def also_passing(session):
    mark("also-passing")


@nox.session(tags=["S002"])
def failing(session):
    mark("failing")
    session.error("this gate fails")


@nox.session(tags=["S003", "S008"])
def skipping(session):
    mark("skipping")
    session.skip("nothing to check")


@nox.session(tags=["S005"])
def toggled(session):
    mark("toggled")
    if (HERE / "fail-toggled").exists():
        session.error("toggled off")


@nox.session(name="edits-queue", tags=["S006"])
def edits_queue(session):
    mark("edits-queue")
    with open(HERE / "QUEUE.md", "ab") as handle:
        handle.write(b"edited while the gate ran\\n")


@nox.session(tags=["S007"])
def interrupts(session):
    mark("interrupts")
    if os.environ.get("SCRATCH_INTERRUPT"):
        os.kill(os.getppid(), signal.SIGINT)  # the parent of nox is queue-runner: Ctrl-C on it
        time.sleep(10)


@nox.session
def untagged(session):
    mark("untagged")
'''

# (id, title, depends, done)
SCRATCH_STEPS = [
    ("S001", "Passing gate", "none", False),
    ("S002", "Failing gate", "none", False),
    ("S003", "Skipped gate", "none", False),
    ("S004", "No gate at all", "none", False),
    ("S005", "Toggled gate, ticked", "none", True),
    ("S006", "Gate that edits the queue", "none", False),
    ("S007", "Gate that interrupts", "none", False),
    ("S008", "Passing and skipped gates", "none", False),
    ("S009", "Blocked by S002", "STEP S002", False),
    ("S010", "Second passing gate, ticked", "none", True),
]


def scratch_queue(steps: list[tuple[str, str, str, bool]], eol: str = "\n") -> str:
    parts = [textwrap.dedent("""\
        # Scratch queue

        ## QUEUE FORMAT

        ```
        STEP XXX: [Action]
        Depends: [Previous step or "none"]
        Done: [ ] (check when complete)
        ```

        ## PHASE 1: SCRATCH (Steps S001-S010)
        """)]
    for step_id, title, depends, done in steps:
        parts.append(textwrap.dedent(f"""\

            ### STEP {step_id}: {title}
            ```
            Input: none
            Output: none
            Depends: {depends}
            Constraints:
              - Done: [ ] in a constraint is not a box
            Done: [{'x' if done else ' '}]
            ```
            """))
    parts.append("\n## COMMAND\n\n```\nFind first step where Done: [ ]\n```\n")
    return "".join(parts).replace("\n", eol)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Scratch:
    dir: Path

    @property
    def queue(self) -> Path:
        return self.dir / "QUEUE.md"

    @property
    def noxfile(self) -> Path:
        return self.dir / "noxfile.py"

    def ran(self) -> list[str]:
        marks = self.dir / "ran.txt"
        return marks.read_text(encoding="utf-8").split() if marks.exists() else []

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120, **popen: Any) -> Result:
        return run_cli("--queue", str(self.queue), "--noxfile", str(self.noxfile), *args,
                       cwd=self.dir, env=env, timeout=timeout, **popen)


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return full_env


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120,
            **popen: Any) -> Result:
    """queue-runner in a fresh process, the way people and CI call it."""
    done = subprocess.run([sys.executable, "-m", "queue_runner", *args], cwd=cwd, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout, check=False, **popen)
    return Result(done.returncode, done.stdout, done.stderr)


def without_override_rights() -> None:
    """preexec_fn: the child obeys file modes even when the tests run as root, the way a user
    without override rights does (root drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and
    CAP_FOWNER from its bounding set, so the program it execs never has them)."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    project = Scratch(tmp_path)
    project.noxfile.write_text(SCRATCH_NOXFILE, encoding="utf-8")
    project.queue.write_text(scratch_queue(SCRATCH_STEPS), encoding="utf-8", newline="")
    return project
