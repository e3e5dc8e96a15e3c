"""`queue-runner check`: everything wrong with a queue file and the gates declared for it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from queue_runner.gates import Gates
from queue_runner.model import Problem, Queue
from queue_runner.selection import structural_problems

STEP_ID_LIKE = re.compile(r"^[A-Z]+\d+$")


def lint(queue: Queue, gates: Gates | None, declared: Mapping[str, Sequence[str]]) -> list[Problem]:
    """Structural problems (ids, fences, boxes, Depends), steps without a gate, boxes ticked
    before their dependencies, and session tags that look like step ids but name no step.
    Without a noxfile (`gates` None) the gate checks are left out."""
    problems = structural_problems(queue)
    done = queue.done_ids
    ids = {s.id for s in queue.steps}
    for step in queue.steps:
        if gates is not None and not gates.of(step.id):
            problems.append(Problem("no-gate", f"STEP {step.id} has no gate: tag a nox session with "
                                    f"{step.id!r}", step.line, step.id))
        if step.done:
            for dep in step.depends:
                if dep in ids and dep not in done:
                    problems.append(Problem("done-before-dependency", f"STEP {step.id} is ticked but "
                                            f"its dependency {dep} is not", step.line, step.id))
    for session, tags in declared.items():
        for tag in tags:
            if STEP_ID_LIKE.match(tag) and tag not in ids:
                problems.append(Problem("gate-unknown-step", f"nox session {session!r} is tagged {tag!r}, "
                                        "which is not a step of this queue"))
    return problems
