"""What queue-runner tells its callers: JSON documents for agents (stdout) and rich text for
people (stderr).

JSON schema, version 1 (fields are only ever added, never renamed or removed):
  every document: {"version": 1, "command": str, "queue": path, "noxfile": path|null,
                   "exit_code": int, "error": str|null, "problems": [Problem]}
  Problem:   {"code", "message", "line": int|null, "step": str|null}
  Step:      {"id", "title", "phase": str|null, "line", "done": bool, "depends": [id],
              "gates": [session], "blocked_by": [id]}
  Session:   {"name", "result": success|failed|aborted|skipped|missing, "reason", "duration"}
  status:    + "summary": {"total", "done", "next": id|null, "state"}, "steps": [Step]
  next:      + "state": runnable|blocked|no-gate|all-done, "step": Step|null, "reason",
               "nox": [argv]|null
  run:       + "state", "step", "reason", "dry_run", "nox": [argv]|null, "sessions": [Session],
               "ticked": bool
  verify:    + "steps": [Step + {"ok": bool, "failures": [Session]}],
               "other_sessions": [Session], "sessions": [Session], "reused": [session]
  check:     + "steps": int
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from queue_runner.gates import Gates, SessionResult
from queue_runner.model import Problem, Queue, Step
from queue_runner.selection import blocked_by

if TYPE_CHECKING:
    from rich.console import Console

JSON_VERSION = 1


# --- JSON ----------------------------------------------------------------------------------

def document(command: str, queue_path: Any, noxfile: Any, exit_code: int, *, error: str | None = None,
             problems: Iterable[Problem] = (), **extra: Any) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": command,
            "queue": str(queue_path) if queue_path is not None else None,
            "noxfile": str(noxfile) if noxfile is not None else None,
            "exit_code": exit_code, "error": error, "problems": [p.as_dict() for p in problems], **extra}


def step_json(queue: Queue, step: Step, gates: Gates | None) -> dict[str, Any]:
    return {"id": step.id, "title": step.title, "phase": step.phase, "line": step.line, "done": step.done,
            "depends": list(step.depends), "gates": list(gates.of(step.id)) if gates else [],
            "blocked_by": [] if step.done else list(blocked_by(queue, step))}


def sessions_json(results: Iterable[SessionResult]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in results]


def emit_json(doc: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


# --- people --------------------------------------------------------------------------------

def console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(message: str, style: str | None = None) -> None:
    """One line on stderr. Plain print when no style is wanted keeps rich out of the way."""
    if style is None:
        print(message, file=sys.stderr)
    else:
        console().print(message, style=style, markup=False)


def problems(items: Sequence[Problem], header: str) -> None:
    out = console()
    out.print(header, style="bold red", markup=False)
    for p in items:
        where = f"line {p.line}: " if p.line else ""
        out.print(f"  {where}[{p.code}] {p.message}", markup=False)


def _phase_label(phase: str | None) -> str:
    if not phase:
        return ""
    head, _, rest = phase.partition(":")
    number = head.removeprefix("PHASE").strip()
    return number or rest.strip() or phase


GATES_WIDTH = 40


def _gate_lines(sessions: Sequence[str]) -> list[str]:
    """Gate names joined by commas, broken into lines of at most GATES_WIDTH characters."""
    lines = [""]
    for i, name in enumerate(sessions):
        piece = name + ("," if i < len(sessions) - 1 else "")
        if lines[-1] and len(lines[-1]) + 1 + len(piece) > GATES_WIDTH:
            lines.append(piece)
        else:
            lines[-1] = f"{lines[-1]} {piece}".lstrip()
    return lines


def status(queue: Queue, gates: Gates, next_id: str | None, summary_line: str) -> None:
    """The status table: styled lines, columns aligned by display width, long gate lists
    wrapped. Built from rich Text rather than rich.table.Table, whose layout pass alone costs
    30-50 ms for 46 rows, a third of the time `status` may take."""
    from rich.cells import cell_len
    from rich.text import Text

    header: tuple[str, ...] = ("step", "title", "phase", "done", "gates", "blocked-by")
    rows: list[tuple[tuple[str, ...], str | None]] = []
    for step in queue.steps:
        waiting = () if step.done else blocked_by(queue, step)
        step_gates = gates.of(step.id)
        style = "bold cyan" if step.id == next_id else ("dim" if step.done else None)
        if not step_gates:
            style = "red"
        first, *more = _gate_lines(step_gates) if step_gates else ["no gate"]
        rows.append(((step.id, step.title, _phase_label(step.phase), "x" if step.done else "·", first,
                      ", ".join(waiting)), style))
        rows.extend((("", "", "", "", extra, ""), style) for extra in more)
    widths = [max(cell_len(h), *(cell_len(row[i]) for row, _ in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = (c + " " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True))
        return " │ ".join(padded).rstrip() + "\n"

    text = Text()
    text.append(f"{queue.path}\n", style="italic")
    text.append(line(header), style="bold")
    text.append("━┿━".join("━" * w for w in widths) + "\n")
    for row, row_style in rows:
        text.append(line(row), style=row_style)
    out = console()
    out.print(text, end="", soft_wrap=True)
    out.print(summary_line, markup=False)


def sessions_table(title: str, results: Sequence[SessionResult]) -> None:
    from rich.table import Table
    from rich.text import Text

    colours = {"success": "green", "skipped": "yellow"}
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("session", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("reason")
    for r in results:
        table.add_row(Text(r.name), Text(r.result, style=colours.get(r.result, "red")), Text(r.reason or ""))
    console().print(table)
