"""Gates: the nox sessions tagged with a step id.

Discovery reads the noxfile statically with `ast` (no import, no subprocess, so `status`
stays fast). Whatever the static reader cannot be sure of (computed names or tags,
parametrized sessions, `nox.session` used outside a decorator) sends discovery to nox
itself, `nox -l --json -t <ids>`, which lists the sessions carrying any of those tags.

Running gates is one `nox --sessions … --report FILE` call. The JSON report decides, not
nox's exit code: nox counts a skipped session as a success, and a gate that did not run
proves nothing."""

from __future__ import annotations

import ast
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEPTH_VARIABLE = "QUEUE_RUNNER_DEPTH"
# queue-runner → nox → a gate running queue-runner → … would never end if a session that runs
# `queue-runner verify` were itself tagged as a gate. Three levels is more than any real use.
MAX_DEPTH = 3


class GateError(Exception):
    """The noxfile cannot be read, or nox could not list its sessions (exit code 2)."""


@dataclass(frozen=True)
class Gates:
    noxfile: Path
    by_step: dict[str, tuple[str, ...]]
    source: str  # "static" or "nox": which reader found them
    order: tuple[str, ...] = ()  # every gate session, in noxfile order

    def of(self, step_id: str) -> tuple[str, ...]:
        return self.by_step.get(step_id, ())

    def union(self, step_ids: Iterable[str]) -> tuple[str, ...]:
        """Sessions of these steps, each once, in noxfile order (cheap checks come first there)."""
        wanted: set[str] = set()
        for step_id in step_ids:
            wanted.update(self.of(step_id))
        rank = {name: i for i, name in enumerate(self.order)}
        return tuple(sorted(wanted, key=lambda name: (rank.get(name, len(rank)), name)))


@dataclass(frozen=True)
class SessionResult:
    name: str
    result: str  # nox's words (success, failed, aborted, skipped) or "missing"
    reason: str | None = None
    duration: float | None = None
    signatures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result == "success"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "reason": self.reason, "duration": self.duration}


@dataclass(frozen=True)
class GateRun:
    command: tuple[str, ...]
    returncode: int | None
    results: tuple[SessionResult, ...]
    report_found: bool = True
    reused: tuple[str, ...] = field(default=())  # sessions judged from an earlier report

    def result_of(self, session: str) -> SessionResult:
        for result in self.results:
            if session == result.name or session in result.signatures:
                return result
        why = "nox wrote no report" if not self.report_found else "not in nox's report"
        return SessionResult(session, "missing", why)

    def failures(self, sessions: Sequence[str]) -> tuple[SessionResult, ...]:
        """Sessions among `sessions` that did not run and succeed. An empty `sessions`
        fails too: a step is never proven by nothing."""
        if not sessions:
            return (SessionResult("(no gate)", "missing", "no session to run"),)
        return tuple(r for r in (self.result_of(s) for s in sessions) if not r.ok)


# --- discovery -----------------------------------------------------------------------------

class _NotStatic(Exception):
    pass


def discover(noxfile: Path, step_ids: Iterable[str]) -> Gates:
    ids = list(dict.fromkeys(step_ids))
    try:
        source = noxfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise GateError(f"cannot read noxfile {noxfile}: {exc.strerror or exc}") from None
    try:
        sessions = _static_sessions(source, str(noxfile))
    except _NotStatic:
        return _discover_with_nox(noxfile, ids)
    return _gates(noxfile, sessions, ids, "static")


def _gates(noxfile: Path, sessions: Iterable[tuple[str, Sequence[str]]], ids: Sequence[str],
           source: str) -> Gates:
    wanted = set(ids)
    by_step: dict[str, list[str]] = {}
    order: list[str] = []
    for name, tags in sessions:
        for tag in tags:
            if tag in wanted:
                by_step.setdefault(tag, []).append(name)
                if name not in order:
                    order.append(name)
    return Gates(noxfile, {k: tuple(v) for k, v in by_step.items()}, source, tuple(order))


def declared_tags(noxfile: Path) -> dict[str, tuple[str, ...]]:
    """Every session of the noxfile and its tags, static reading only (for `check`)."""
    try:
        source = noxfile.read_text(encoding="utf-8")
        return dict(_static_sessions(source, str(noxfile)))
    except (OSError, _NotStatic):
        return {}


def _static_sessions(source: str, filename: str) -> list[tuple[str, tuple[str, ...]]]:
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise GateError(f"noxfile {filename} does not parse: line {exc.lineno}: {exc.msg}") from None
    modules, functions = _nox_names(tree)

    def is_session(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr == "session":
            return isinstance(node.value, ast.Name) and node.value.id in modules
        return isinstance(node, ast.Name) and node.id in functions

    def is_parametrize(node: ast.expr) -> bool:
        target = node.func if isinstance(node, ast.Call) else node
        return (isinstance(target, ast.Attribute) and target.attr == "parametrize") or (
            isinstance(target, ast.Name) and target.id == "parametrize")

    # Only module-level code registers sessions, so function bodies (most of the file) are not
    # walked: decorators are read, and every other module-level statement is searched for
    # `nox.session` used some other way (`nox.session(...)(fn)`, a loop), which would make
    # the static view partial.
    sessions: list[tuple[str, tuple[str, ...]]] = []
    loose: list[ast.AST] = []
    for statement in _module_statements(tree.body):
        if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            loose.append(statement)
            continue
        found: tuple[str, tuple[str, ...]] | None = None
        for decorator in statement.decorator_list:
            if is_parametrize(decorator):
                raise _NotStatic
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call is not None else decorator
            if is_session(target):
                found = _session_from(statement.name, call)
            else:
                loose.append(decorator)
        if found is not None:
            sessions.append(found)
    if any(is_session(node) for root in loose for node in ast.walk(root)):
        raise _NotStatic
    return sessions


def _module_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, looking inside if/try/with blocks (not functions or classes)."""
    for statement in body:
        if isinstance(statement, ast.If | ast.Try | ast.With):
            yield from _module_statements(statement.body)
            yield from _module_statements(getattr(statement, "orelse", []))
            for handler in getattr(statement, "handlers", []):
                yield from _module_statements(handler.body)
            yield from _module_statements(getattr(statement, "finalbody", []))
        else:
            yield statement


def _nox_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to the nox module and to nox.session by the noxfile's imports."""
    modules: set[str] = set()
    functions: set[str] = set()
    for node in _module_statements(tree.body):
        if isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name == "nox")
        elif isinstance(node, ast.ImportFrom) and node.module == "nox":
            functions.update(a.asname or a.name for a in node.names if a.name == "session")
    return modules, functions


def _session_from(function: str, call: ast.Call | None) -> tuple[str, tuple[str, ...]]:
    name, tags = function, ()
    if call is None:
        return name, tags
    if call.args or any(k.arg is None for k in call.keywords):
        raise _NotStatic
    for keyword in call.keywords:
        value: Any
        try:
            value = ast.literal_eval(keyword.value)
        except ValueError:
            raise _NotStatic from None
        if keyword.arg == "name":
            if not isinstance(value, str):
                raise _NotStatic
            name = value
        elif keyword.arg == "tags":
            if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
                raise _NotStatic
            tags = tuple(value)
        elif keyword.arg == "python" and value not in (None, False):
            raise _NotStatic  # interpreter lists multiply sessions and rename them
    return name, tags


def _discover_with_nox(noxfile: Path, ids: Sequence[str]) -> Gates:
    import subprocess

    if not ids:
        return Gates(noxfile, {}, "nox")
    command = [sys.executable, "-m", "nox", "--noxfile", str(noxfile), "--list", "--json", "--tags", *ids]
    try:
        done = subprocess.run(command, cwd=noxfile.parent, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise GateError(f"cannot start nox: {exc}") from None
    try:
        listing = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        listing = None
    if not isinstance(listing, list):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise GateError(f"`nox --list --json` failed on {noxfile}: {' / '.join(tail) or done.returncode}")
    sessions = [(str(entry["session"]), tuple(entry.get("tags") or ())) for entry in listing]
    return _gates(noxfile, sessions, ids, "nox")


# --- running -------------------------------------------------------------------------------

def depth() -> int:
    try:
        return int(os.environ.get(DEPTH_VARIABLE, "0"))
    except ValueError:
        return 0


def nox_command(noxfile: Path, sessions: Sequence[str], report: Path | str) -> list[str]:
    return [sys.executable, "-m", "nox", "--noxfile", str(noxfile), "--no-stop-on-first-error",
            "--report", str(report), "--sessions", *sessions]


# After Ctrl-C, how long nox and its sessions get to shut down (a test server stopping its
# PostgreSQL takes a second or two; the noxfile gives its sessions up to STOP_TIMEOUTS) before
# SIGTERM, and then SIGKILL, go to the whole group.
INTERRUPT_WAIT = 60.0
TERMINATE_WAIT = 15.0


def run(noxfile: Path, sessions: Sequence[str]) -> GateRun:
    """Run `sessions` in one nox call, nox's output going to our stderr, and read its report.

    nox runs in its own process group, so Ctrl-C reaches queue-runner alone and is passed on
    exactly once: SIGINT to the group (nox and the sessions' processes, as a terminal would),
    then a wait while they clean up (stopping any database they started). Another Ctrl-C, or
    no exit within INTERRUPT_WAIT, sends SIGTERM, and then SIGKILL. KeyboardInterrupt is
    re-raised once the group is gone."""
    import subprocess
    import tempfile

    env = dict(os.environ)
    env[DEPTH_VARIABLE] = str(depth() + 1)
    with tempfile.TemporaryDirectory(prefix="queue-runner-") as tmp:
        report = Path(tmp) / "nox-report.json"
        command = nox_command(noxfile, sessions, report)
        out, relay = _stderr_target()
        proc = subprocess.Popen(command, cwd=noxfile.parent, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if relay else None, process_group=0)
        try:
            output, _ = proc.communicate()
        except KeyboardInterrupt:
            _stop_group(proc)
            raise
        if relay and output:
            sys.stderr.write(output.decode("utf-8", errors="replace"))
        results, found = read_report(report)
    return GateRun(tuple(command), proc.returncode, tuple(results), found)


def _stop_group(proc: Any) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to nox's process group until nox has exited; a
    further Ctrl-C while waiting moves on to the next signal at once."""
    import signal
    import subprocess

    for sig, wait in ((signal.SIGINT, INTERRUPT_WAIT), (signal.SIGTERM, TERMINATE_WAIT), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue


def _stderr_target() -> tuple[Any, bool]:
    """Our stderr's descriptor when it has one; otherwise a pipe whose text we copy over."""
    import subprocess

    try:
        return sys.stderr.fileno(), False
    except (AttributeError, OSError, ValueError):
        return subprocess.PIPE, True


def read_report(path: Path) -> tuple[list[SessionResult], bool]:
    """Session results from a nox --report file; ([], False) when there is none to read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], False
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, list):
        return [], False
    results = []
    for entry in sessions:
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        results.append(SessionResult(
            name=str(entry["name"]), result=str(entry.get("result", "missing")), reason=entry.get("reason"),
            duration=entry.get("duration"), signatures=tuple(entry.get("signatures") or ())))
    return results, True


def combine(earlier: Sequence[SessionResult], run_: GateRun) -> GateRun:
    """A run whose results are `run_`'s plus those reused from earlier reports (fresh wins)."""
    fresh = {r.name for r in run_.results}
    reused = tuple(r for r in earlier if r.name not in fresh)
    return GateRun(run_.command, run_.returncode, (*reused, *run_.results), run_.report_found,
                   tuple(r.name for r in reused))
