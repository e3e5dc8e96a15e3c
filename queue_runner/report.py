"""What queue-runner tells its callers: JSON documents for agents (stdout) and rich text for
people (stderr).

JSON schema, version 1 (fields are only ever added, never renamed or removed):
  every document: {"version": 1, "command": str, "queue": path, "noxfile": path|null,
                   "exit_code": int, "error": str|null, "problems": [Problem],
                   "note": str|null}   (note: e.g. no noxfile found, and where it was looked for)
  Problem:   {"code", "message", "line": int|null, "step": str|null}
  Step:      {"id", "title", "phase": str|null, "line", "done": bool, "depends": [id],
              "gates": [session]|null (null: unknown, no noxfile), "blocked_by": [id]}
  Session:   {"name", "result": success|failed|aborted|skipped|missing, "reason", "duration"}
  status:    + "summary": {"total", "done", "next": id|null, "state"}, "steps": [Step]
  next:      + "state": runnable|blocked|no-gate|all-done|gates-unknown, "step": Step|null, "reason",
               "nox": [argv]|null
  run:       + "state", "step", "reason", "dry_run", "nox": [argv]|null, "sessions": [Session],
               "ticked": bool
  verify:    + "steps": [Step + {"ok": bool, "failures": [Session]}],
               "other_sessions": [Session], "sessions": [Session], "reused": [session]
  check:     + "steps": int
"""

from __future__ import annotations

import functools
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
             problems: Iterable[Problem] = (), note: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": command,
            "queue": str(queue_path) if queue_path is not None else None,
            "noxfile": str(noxfile) if noxfile is not None else None,
            "exit_code": exit_code, "error": error, "problems": [p.as_dict() for p in problems], "note": note,
            **extra}


def step_json(queue: Queue, step: Step, gates: Gates | None) -> dict[str, Any]:
    return {"id": step.id, "title": step.title, "phase": step.phase, "line": step.line, "done": step.done,
            "depends": list(step.depends), "gates": list(gates.of(step.id)) if gates is not None else None,
            "blocked_by": [] if step.done else list(blocked_by(queue, step))}


def sessions_json(results: Iterable[SessionResult]) -> list[dict[str, Any]]:
    return [r.as_dict() for r in results]


def emit_json(doc: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


# --- people --------------------------------------------------------------------------------

def console() -> Console:
    import os

    out = _console_class()(stderr=True, highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = PIPE_WIDTH  # rich would assume 80 columns and wrap tables mid-sentence in logs
    return out


PIPE_WIDTH = 1000


@functools.cache
def _console_class() -> type[Console]:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 here, which reads as "a gate failed"; cli.main owns the answer.
            raise BrokenPipeError

    return _Console


def say(message: str, style: str | None = None) -> None:
    """One line on stderr, never wrapped by us (on a pipe or in a log rich would break it at 80
    columns; a terminal wraps long lines itself). Plain print when no style is wanted keeps
    rich out of the way."""
    if style is None:
        print(message, file=sys.stderr)
    else:
        console().print(message, style=style, markup=False, soft_wrap=True)


def problems(items: Sequence[Problem], header: str) -> None:
    out = console()
    out.print(header, style="bold red", markup=False, soft_wrap=True)
    for p in items:
        where = f"line {p.line}: " if p.line else ""
        out.print(f"  {where}[{p.code}] {p.message}", markup=False, soft_wrap=True)


def _phase_label(phase: str | None) -> str:
    """`PHASE 2: API LAYER` → `2`; `BOOTSTRAP PHASE` → `BOOTSTRAP`; anything else as it is."""
    if not phase:
        return ""
    head, _, rest = phase.partition(":")
    number = head.removeprefix("PHASE").removesuffix("PHASE").strip()
    return number or rest.strip() or phase


GATES_WIDTH = 40
HEADER = ("step", "title", "phase", "done", "gates", "blocked-by")
SEPARATOR = " │ "
# How far a narrow terminal may shrink each column, in the order they give way: titles first
# (down to a readable stub), then the phase (0 drops the column), then the blockers list.
SHRINK = ((1, 16), (2, 0), (5, 6), (1, 6))


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


def _gate_count(sessions: Sequence[str] | None) -> str:
    if sessions is None:
        return "unknown"
    return {0: "no gate", 1: "1 gate"}.get(len(sessions), f"{len(sessions)} gates")


def _table_width(out: Console) -> int | None:
    """The width the table must fit: the terminal's, or COLUMNS when set; None (no limit) for a
    pipe or a log, which should get every detail rather than rich's guess of 80 columns."""
    import os

    return out.width if out.is_terminal or os.environ.get("COLUMNS") else None


def _clip(text: str, width: int) -> str:
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1) + "…" if width > 1 else ""


def status(queue: Queue, gates: Gates | None, next_id: str | None, summary_line: str, *,
           wide: bool = False) -> None:
    """The status table: styled lines, columns aligned by display width. It fits the width
    `_table_width` gives: gate lists collapse to a count, then titles, the phase and the
    blockers shrink (cut with an ellipsis) as SHRINK says; `wide` shows everything, long
    gate lists wrapped. Built from rich Text rather than rich.table.Table, whose layout pass
    alone costs 30-50 ms for 46 rows, a third of the time `status` may take."""
    from rich.cells import cell_len
    from rich.text import Text

    out = console()
    limit = None if wide else _table_width(out)
    facts = []
    for step in queue.steps:
        step_gates = gates.of(step.id) if gates is not None else None
        style = "bold cyan" if step.id == next_id else ("dim" if step.done else None)
        if step_gates == ():
            style = "red"
        waiting = () if step.done else blocked_by(queue, step)
        facts.append((step, step_gates, ", ".join(waiting), style))

    def rows(collapse: bool) -> list[tuple[tuple[str, ...], str | None]]:
        made: list[tuple[tuple[str, ...], str | None]] = []
        for step, step_gates, waiting, style in facts:
            if collapse or not step_gates:
                first, more = _gate_count(step_gates), []
            else:
                first, *more = _gate_lines(step_gates)
            made.append(((step.id, step.title, _phase_label(step.phase), "x" if step.done else "·", first,
                          waiting), style))
            made.extend((("", "", "", "", extra, ""), style) for extra in more)
        return made

    def measure(table: list[tuple[tuple[str, ...], str | None]]) -> list[int]:
        return [max(cell_len(h), *(cell_len(row[i]) for row, _ in table)) for i, h in enumerate(HEADER)]

    def total(widths: list[int]) -> int:
        shown = [w for w in widths if w]
        return sum(shown) + len(SEPARATOR) * (len(shown) - 1)

    table = rows(collapse=False)
    widths = measure(table)
    if limit is not None and total(widths) > limit:
        table = rows(collapse=True)
        widths = measure(table)
        for column, floor in SHRINK:
            excess = total(widths) - limit
            if excess <= 0:
                break
            if floor == 0:
                widths[column] = 0  # a clipped phase says nothing: drop the column
            else:
                widths[column] -= max(0, min(excess, widths[column] - floor))

    def line(cells: Sequence[str]) -> str:
        shown = (_clip(c, w) for c, w in zip(cells, widths, strict=True) if w)
        padded = (c + " " * (w - cell_len(c)) for c, w in zip(shown, [w for w in widths if w], strict=True))
        return SEPARATOR.join(padded).rstrip() + "\n"

    text = Text()
    text.append(f"{queue.path}\n", style="italic")
    text.append(line(HEADER), style="bold")
    text.append("━┿━".join("━" * w for w in widths if w) + "\n")
    for row, row_style in table:
        text.append(line(row), style=row_style)
    out.print(text, end="", soft_wrap=True)
    out.print(summary_line, markup=False, soft_wrap=True)


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
