"""What the queue file holds, as plain frozen data. Nothing here reads files or runs tools."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Exit codes, the same numbers nox uses for the same situations. BAD_QUEUE also covers a queue
# file that cannot be written: the gates passed, so it must not read as GATE_FAILED.
OK = 0
GATE_FAILED = 1
BAD_QUEUE = 2
NOTHING_RUNNABLE = 3
INTERRUPTED = 130
BROKEN_PIPE = 141  # whoever read our output went away (`| head`); shells report SIGPIPE as 141


@dataclass(frozen=True)
class Problem:
    """Something wrong with the queue file (or with the gates declared for it)."""

    code: str
    message: str
    line: int | None = None
    step: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "line": self.line, "step": self.step}


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    phase: str | None
    line: int
    fields: dict[str, str]
    depends: tuple[str, ...]
    done: bool
    # Byte offset of the character between the brackets of `Done: [ ]`; None without a box.
    box_offset: int | None

    def field(self, name: str) -> str:
        return self.fields.get(name, "")


@dataclass(frozen=True)
class Queue:
    path: Path
    data: bytes  # the exact bytes parsed: ticking checks the file still holds them
    steps: tuple[Step, ...]
    problems: tuple[Problem, ...] = field(default=())

    def get(self, step_id: str) -> Step | None:
        for step in self.steps:
            if step.id == step_id:
                return step
        return None

    @property
    def done_ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.steps if s.done)


class QueueError(Exception):
    """The queue file cannot be used as it is, or cannot be written (exit code 2)."""

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems
