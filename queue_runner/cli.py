"""`queue-runner`: status, next, run [STEP], verify [--all], check.

Exit codes follow nox: 0 ok, 1 a gate failed (or a ticked box is no longer true), 2 the queue
file (or noxfile) is unusable or the queue file cannot be written, 3 nothing runnable (all
done, blocked, or no gate), 130 interrupted (Ctrl-C or SIGTERM), 141 the output pipe closed.
With --json one JSON document goes to stdout (schema in report.py); people's output always
goes to stderr. `status`, `next` and `check` work without a noxfile (gates unknown);
`run` and `verify` need one."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queue_runner import gates as gates_mod
from queue_runner import parse, report, selection
from queue_runner.model import BAD_QUEUE, BROKEN_PIPE, GATE_FAILED, INTERRUPTED, NOTHING_RUNNABLE, OK, Queue, QueueError

QUEUE_FILE = "BACKEND_EXECUTION_QUEUE.md"
NOXFILE = "noxfile.py"
# Commands that read gates when a noxfile is there and still work when none is.
GATES_OPTIONAL = ("status", "next", "check")
EXIT_CODES = ("exit codes: 0 ok; 1 a gate failed (or a ticked box is no longer true); 2 the queue file "
              "or noxfile is unusable, or the queue file cannot be written (nothing ticked); 3 nothing "
              "runnable (all done, blocked, or no gate); 130 interrupted; 141 the output pipe closed")


class UsageError(Exception):
    """Bad arguments or a missing file: exit 2 with one clear line."""


@dataclass
class Context:
    command: str
    json: bool
    queue_path: Path | None = None
    noxfile: Path | None = None
    note: str | None = None  # said once, e.g. where a noxfile was looked for

    def finish(self, exit_code: int, **extra: Any) -> int:
        if self.json:
            report.emit_json(report.document(self.command, self.queue_path, self.noxfile, exit_code,
                                             note=self.note, **extra))
        return exit_code


def _find_upwards(name: str, start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _resolve_paths(ctx: Context, args: argparse.Namespace) -> None:
    cwd = Path.cwd()
    queue = getattr(args, "queue", None)
    if queue is None:
        queue = _find_upwards(QUEUE_FILE, cwd)
        if queue is None:
            raise UsageError(f"no {QUEUE_FILE} in {cwd} or above it; point at one with --queue PATH")
    ctx.queue_path = Path(queue)
    noxfile = getattr(args, "noxfile", None)
    if noxfile is None:
        beside = ctx.queue_path.parent / NOXFILE
        noxfile = beside if beside.is_file() else _find_upwards(NOXFILE, cwd)
        if noxfile is None:
            where = f"no {NOXFILE} beside {ctx.queue_path} or in {cwd} or above"
            if ctx.command not in GATES_OPTIONAL:
                raise UsageError(f"{where}; use --noxfile PATH")
            ctx.note = f"gates unknown: {where} (--noxfile PATH names one)"
            return
    ctx.noxfile = Path(noxfile).resolve()


def _gates(ctx: Context, queue: Queue) -> gates_mod.Gates | None:
    """The gates of the queue's steps; None when no noxfile was found (status, next, check)."""
    if ctx.noxfile is None:
        return None
    return gates_mod.discover(ctx.noxfile, [s.id for s in queue.steps])


def _load(ctx: Context) -> tuple[Queue, gates_mod.Gates | None]:
    """The queue (refused when structurally broken) and the gates of its steps."""
    assert ctx.queue_path is not None
    queue = parse.read(ctx.queue_path)
    broken = selection.structural_problems(queue)
    if broken:
        raise QueueError(f"{ctx.queue_path} is not a usable queue ({len(broken)} problem(s); "
                         "`queue-runner check` lists them)", tuple(broken))
    return queue, _gates(ctx, queue)


def _need_gates(gates: gates_mod.Gates | None) -> gates_mod.Gates:
    assert gates is not None  # run and verify refuse to start without a noxfile
    return gates


def _command_line(argv: Sequence[str]) -> list[str]:
    return [Path(argv[0]).name if argv[0] == sys.executable else argv[0], *argv[1:]]


# --- commands ------------------------------------------------------------------------------

def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    queue, gates = _load(ctx)
    chosen = selection.select(queue, gates.by_step if gates else None)
    done = sum(s.done for s in queue.steps)
    next_id = chosen.step.id if chosen.step is not None else None
    if not ctx.json:
        step = chosen.step
        tail = chosen.reason if step is None else f"next: {step.id} {step.title} ({chosen.state})"
        runnable = chosen.runnable or chosen.state == selection.GATES_UNKNOWN
        report.status(queue, gates, next_id if runnable else None,
                      f"{done}/{len(queue.steps)} steps done; {tail}", wide=args.wide)
        if ctx.note:
            report.say(ctx.note, "yellow")
    summary = {"total": len(queue.steps), "done": done, "next": next_id, "state": chosen.state}
    return ctx.finish(OK, summary=summary, steps=[report.step_json(queue, s, gates) for s in queue.steps])


def cmd_next(ctx: Context, args: argparse.Namespace) -> int:
    queue, gates = _load(ctx)
    chosen = selection.select(queue, gates.by_step if gates else None)
    return _announce(ctx, queue, gates, chosen, dry_run=None)


def _announce(ctx: Context, queue: Queue, gates: gates_mod.Gates | None, chosen: selection.Selection,
              dry_run: bool | None) -> int:
    """Report a selection that will not (or cannot) run: `next`, `run --dry-run`, or a refusal."""
    if chosen.runnable or chosen.state == selection.GATES_UNKNOWN:
        code = OK
    else:
        code = BAD_QUEUE if chosen.state == selection.UNKNOWN else NOTHING_RUNNABLE
    argv = None
    if chosen.runnable and ctx.noxfile is not None:
        argv = gates_mod.nox_command(ctx.noxfile, chosen.gates, "REPORT.json")
    if not ctx.json:
        if chosen.runnable and chosen.step is not None:
            report.say(f"STEP {chosen.step.id}: {chosen.step.title}")
            report.say(f"  gates: {', '.join(chosen.gates)}")
            assert argv is not None
            report.say(f"  {'would run' if dry_run else 'runs'}: {shlex.join(_command_line(argv))}")
        elif chosen.state == selection.GATES_UNKNOWN and chosen.step is not None:
            report.say(f"STEP {chosen.step.id}: {chosen.step.title}")
        else:
            report.say(chosen.reason, "yellow" if code == NOTHING_RUNNABLE else "red")
        if ctx.note:
            report.say(ctx.note, "yellow")
    extra: dict[str, Any] = {
        "state": chosen.state, "reason": chosen.reason, "nox": argv,
        "step": report.step_json(queue, chosen.step, gates) if chosen.step is not None else None}
    if dry_run is not None:
        extra.update(dry_run=dry_run, sessions=[], ticked=False)
    return ctx.finish(code, **extra)


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from queue_runner import edit

    assert ctx.noxfile is not None
    queue, found = _load(ctx)
    gates = _need_gates(found)
    chosen = selection.select(queue, gates.by_step, args.step)
    if not chosen.runnable or args.dry_run:
        return _announce(ctx, queue, gates, chosen, dry_run=bool(args.dry_run))
    step = chosen.step
    assert step is not None
    _guard_depth()
    try:
        edit.check_writable(queue.path)  # before the gates: they may take minutes
    except edit.QueueUnwritable as exc:
        return _not_written(ctx, exc, state=chosen.state, dry_run=False, nox=None, sessions=[],
                            step=report.step_json(queue, step, gates))
    if not ctx.json:
        report.say(f"STEP {step.id}: {step.title}: running {', '.join(chosen.gates)}", "bold")
    earlier = _earlier_results(args.reuse)
    have = gates_mod.GateRun((), None, tuple(earlier))
    remaining = [g for g in chosen.gates if have.result_of(g).result == "missing"]
    if remaining:
        run = gates_mod.combine(earlier, gates_mod.run(ctx.noxfile, remaining))
    else:
        run = gates_mod.GateRun((), 0, tuple(earlier), True, tuple(r.name for r in earlier))
    failures = list(run.failures(chosen.gates))
    # Sessions nox added on its own (`requires=`) in this call must pass as well.
    failures += [r for r in run.results
                 if not r.ok and r.name not in run.reused and r.name not in {f.name for f in failures}]
    if not failures and run.returncode != 0:
        failures.append(gates_mod.SessionResult("nox", "failed", f"nox exited {run.returncode}"))
    extra: dict[str, Any] = {"state": chosen.state, "reason": "", "dry_run": False,
                             "nox": list(run.command), "sessions": report.sessions_json(run.results),
                             "step": report.step_json(queue, step, gates)}
    if not ctx.json:
        report.sessions_table(f"gates of STEP {step.id}", run.results or failures)
    if failures:
        names = ", ".join(f"{f.name} ({f.result})" for f in failures)
        extra["reason"] = f"not ticked: {names}"
        if not ctx.json:
            report.say(f"STEP {step.id} not ticked: {names}", "bold red")
        return ctx.finish(GATE_FAILED, ticked=False, **extra)
    try:
        edit.tick(queue, step)
    except QueueError as exc:
        return _not_written(ctx, exc, **extra)
    if not ctx.json:
        report.say(f"STEP {step.id} ticked: every gate ran and passed", "bold green")
    extra["step"]["done"] = True
    extra["reason"] = "every gate ran and passed"
    return ctx.finish(OK, ticked=True, **extra)


def _not_written(ctx: Context, exc: QueueError, **extra: Any) -> int:
    """The gates passed (or were not run yet) but the box could not be ticked: exit 2, not 1."""
    if not ctx.json:
        report.say(f"error: {exc}", "red")
    extra["reason"] = f"not ticked: {exc}"
    return ctx.finish(BAD_QUEUE, error=str(exc), ticked=False, **extra)


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    assert ctx.noxfile is not None
    queue, found = _load(ctx)
    gates = _need_gates(found)
    if args.steps:
        targets = []
        for step_id in args.steps:
            step = queue.get(step_id)
            if step is None:
                raise UsageError(f"there is no STEP {step_id} in {ctx.queue_path}")
            if not step.done:
                if not ctx.json:
                    report.say(f"STEP {step_id} is not ticked: there is no box to verify", "yellow")
                return ctx.finish(NOTHING_RUNNABLE, steps=[], other_sessions=[], sessions=[], reused=[])
            targets.append(step)
    else:
        targets = [s for s in queue.steps if s.done]
    needed = gates.union(s.id for s in targets)
    others: tuple[str, ...] = ()
    if args.every_gate:
        every = gates.union(s.id for s in queue.steps)
        others = tuple(s for s in every if s not in needed)
    if not needed and not others:
        if not ctx.json:
            report.say("no ticked step: nothing to verify")
        return ctx.finish(OK, steps=[], other_sessions=[], sessions=[], reused=[])

    earlier = _earlier_results(args.reuse)
    have = gates_mod.GateRun((), None, tuple(earlier))
    remaining = [s for s in (*needed, *others) if have.result_of(s).result == "missing"]
    if remaining:
        _guard_depth()
        if not ctx.json:
            reused = len(needed) + len(others) - len(remaining)
            report.say(f"verifying {len(targets)} ticked step(s): running {len(remaining)} session(s)"
                       + (f", reusing {reused} from earlier reports" if reused else ""), "bold")
        run = gates_mod.combine(earlier, gates_mod.run(ctx.noxfile, remaining))
    else:
        run = gates_mod.GateRun((), None, tuple(earlier), True, tuple(r.name for r in earlier))

    step_docs = []
    false_boxes = []
    for step in targets:
        failures = run.failures(gates.of(step.id))
        doc = report.step_json(queue, step, gates)
        doc.update(ok=not failures, failures=report.sessions_json(failures))
        step_docs.append(doc)
        if failures:
            false_boxes.append((step, failures))
    other_results = [run.result_of(s) for s in others]
    failing_others = [r for r in other_results if not r.ok]
    code = GATE_FAILED if false_boxes or failing_others else OK
    if not ctx.json:
        report.sessions_table("gate sessions", [run.result_of(s) for s in (*needed, *others)])
        for step, failures in false_boxes:
            names = ", ".join(f"{f.name} ({f.result})" for f in failures)
            report.say(f"STEP {step.id} is ticked but no longer true: {names}", "bold red")
        if failing_others:
            names = ", ".join(f"{r.name} ({r.result})" for r in failing_others)
            report.say(f"gate sessions of unticked steps failing: {names}", "bold red")
        if code == OK:
            report.say(f"{len(targets)} ticked step(s) still true"
                       + (f"; {len(others)} other gate session(s) pass" if others else ""), "bold green")
    return ctx.finish(code, steps=step_docs, other_sessions=report.sessions_json(other_results),
                      sessions=report.sessions_json(run.results), reused=list(run.reused))


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    from queue_runner import check

    assert ctx.queue_path is not None
    queue = parse.read(ctx.queue_path)
    gates = _gates(ctx, queue)
    declared = gates_mod.declared_tags(ctx.noxfile) if ctx.noxfile is not None else {}
    found = check.lint(queue, gates, declared)
    if not ctx.json:
        if found:
            report.problems(found, f"{ctx.queue_path}: {len(found)} problem(s)")
        elif gates is None:
            report.say(f"{ctx.queue_path}: {len(queue.steps)} steps; no problems", "green")
        else:
            report.say(f"{ctx.queue_path}: {len(queue.steps)} steps, every one with a gate; no problems", "green")
        if ctx.note:
            report.say(ctx.note, "yellow")
    return ctx.finish(BAD_QUEUE if found else OK, problems=found, steps=len(queue.steps))


def _earlier_results(paths: Sequence[str] | None) -> list[gates_mod.SessionResult]:
    """Session results of nox --report files from this build (later files win)."""
    earlier: list[gates_mod.SessionResult] = []
    for path in paths or ():
        results, found = gates_mod.read_report(Path(path))
        if not found:
            raise UsageError(f"cannot read nox report {path}")
        fresh = {r.name for r in results}
        earlier = [r for r in earlier if r.name not in fresh] + list(results)
    return earlier


def _guard_depth() -> None:
    if gates_mod.depth() >= gates_mod.MAX_DEPTH:
        raise UsageError(f"queue-runner is already nested {gates_mod.depth()} deep: a gate session seems to "
                         "run queue-runner itself (never tag the `queue` session with a step id)")


# --- arguments -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    # The shared options are accepted before and after the command; SUPPRESS keeps a value given
    # before the command from being reset by the subcommand's defaults.
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--queue", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help=f"queue file (default: {QUEUE_FILE} here or in a parent directory)")
    shared.add_argument("--noxfile", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help=f"noxfile holding the gates (default: {NOXFILE} beside the queue file, else here or "
                        "above); status, next and check work without one")
    shared.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document on stdout (human output stays on stderr)")

    parser = argparse.ArgumentParser(prog="queue-runner", parents=[shared],
                                     description="Drive the build from the queue file through nox gates.",
                                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", parents=[shared], help="every step: phase, box, gates, blockers",
                            epilog="The table fits the terminal: gates collapse to a count and titles "
                            "shorten when it is narrow; --wide (or --json) gives every detail.")
    status.add_argument("--wide", action="store_true", help="every gate and the whole title, whatever the width")
    sub.add_parser("next", parents=[shared], help="the step `run` would run and its gates; changes nothing")
    run = sub.add_parser("run", parents=[shared], epilog=EXIT_CODES,
                         help="run the gates of the next step (or STEP); tick it only if all passed")
    run.add_argument("step", nargs="?", metavar="STEP")
    run.add_argument("--dry-run", action="store_true", help="say what would run; run nothing")
    run.add_argument("--reuse", nargs="+", metavar="REPORT", default=[],
                     help="nox --report files from this build: their sessions are judged, not run again")
    verify = sub.add_parser("verify", parents=[shared], help="re-run the gates of ticked steps")
    verify.add_argument("steps", nargs="*", metavar="STEP", help="ticked steps to verify (default: all)")
    verify.add_argument("--all", action="store_true", help="every ticked step (the default)")
    verify.add_argument("--every-gate", action="store_true",
                        help="also run the gates of unticked steps, in the same nox call; any failure fails")
    verify.add_argument("--reuse", nargs="+", metavar="REPORT", default=[],
                        help="nox --report files from this build: their sessions are not run again")
    sub.add_parser("check", parents=[shared], help="lint the queue file and its gates")
    return parser


COMMANDS = {"status": cmd_status, "next": cmd_next, "run": cmd_run, "verify": cmd_verify, "check": cmd_check}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `queue-runner status 2>&1 | head -1`: the reader is gone, so say nothing more (even
        # Python's own flush at exit would complain) and exit the way shells expect.
        _silence_output()
        return BROKEN_PIPE


def _silence_output() -> None:
    import contextlib
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(devnull, stream.fileno())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _main(argv: Sequence[str] | None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    ctx = Context(args.command, bool(getattr(args, "json", False)))
    # SIGTERM (a CI runner, or nox giving up on us) stops the gates the way Ctrl-C does.
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        _resolve_paths(ctx, args)
        return COMMANDS[args.command](ctx, args)
    except BrokenPipeError:
        raise
    except (QueueError, gates_mod.GateError, UsageError, OSError) as exc:
        found = getattr(exc, "problems", ())
        if not ctx.json:
            if found:
                report.problems(found, str(exc))
            else:
                report.say(f"error: {exc}", "red")
        return ctx.finish(BAD_QUEUE, error=str(exc), problems=found)
    except KeyboardInterrupt:
        if not ctx.json:
            report.say("interrupted: nothing ticked", "yellow")
        return ctx.finish(INTERRUPTED, error="interrupted")
    finally:
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
