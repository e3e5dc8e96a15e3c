"""Which step runs next, and what blocks the others. Pure functions over a parsed Queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from queue_runner.model import Problem, Queue, Step

RUNNABLE = "runnable"
BLOCKED = "blocked"
NO_GATE = "no-gate"
ALREADY_DONE = "done"
ALL_DONE = "all-done"
UNKNOWN = "unknown"
GATES_UNKNOWN = "gates-unknown"  # no noxfile was found: what is next is known, its gates are not


@dataclass(frozen=True)
class Selection:
    state: str
    step: Step | None
    gates: tuple[str, ...] = ()
    blocked_by: tuple[str, ...] = ()
    reason: str = ""

    @property
    def runnable(self) -> bool:
        return self.state == RUNNABLE


def blocked_by(queue: Queue, step: Step) -> tuple[str, ...]:
    """Dependencies of `step` whose boxes are empty (or that do not exist)."""
    done = queue.done_ids
    return tuple(dep for dep in step.depends if dep not in done)


def structural_problems(queue: Queue) -> list[Problem]:
    """Problems that make the queue unusable for status/next/run/verify: everything the parser
    found, duplicate ids, and dependencies that are missing or point forward."""
    problems = list(queue.problems)
    if not queue.steps:
        problems.append(Problem("no-steps", "no `### STEP <id>: <title>` heading found"))
    seen: dict[str, int] = {}
    for step in queue.steps:
        if step.id in seen:
            problems.append(Problem("duplicate-id", f"STEP {step.id} is defined twice (lines {seen[step.id]} "
                                    f"and {step.line})", step.line, step.id))
        for dep in step.depends:
            if dep == step.id:
                problems.append(Problem("forward-dependency", f"STEP {step.id} depends on itself",
                                        step.line, step.id))
            elif dep in seen:
                continue
            elif queue.get(dep) is not None:
                problems.append(Problem("forward-dependency", f"STEP {step.id} depends on {dep}, "
                                        "which comes later in the queue", step.line, step.id))
            else:
                problems.append(Problem("unknown-dependency", f"STEP {step.id} depends on {dep}, "
                                        "which is not in the queue", step.line, step.id))
        seen.setdefault(step.id, step.line)
    return problems


def select(queue: Queue, gates: Mapping[str, Sequence[str]] | None, step_id: str | None = None) -> Selection:
    """The step `run` would run. Without `step_id`: the first step with an empty box, in file
    order; no skipping past it (the queue's first rule), so if it is blocked nothing runs.
    With `step_id`: that step, provided its box is empty and its dependencies are ticked.
    `gates` None means they are unknown (no noxfile): the step is found, its gates are not."""
    known = gates is not None
    gates = gates or {}
    if step_id is None:
        step = next((s for s in queue.steps if not s.done), None)
        if step is None:
            return Selection(ALL_DONE, None, reason="every step is done")
    else:
        step = queue.get(step_id)
        if step is None:
            return Selection(UNKNOWN, None, reason=f"there is no STEP {step_id} in {queue.path.name}")
        if step.done:
            return Selection(ALREADY_DONE, step, tuple(gates.get(step.id, ())),
                             reason=f"STEP {step.id} is already done (`queue-runner verify {step.id}` "
                             "re-runs its gates)")
    step_gates = tuple(gates.get(step.id, ()))
    waiting = blocked_by(queue, step)
    if waiting:
        return Selection(BLOCKED, step, step_gates, waiting,
                         f"STEP {step.id} waits for {', '.join(waiting)}")
    if not known:
        return Selection(GATES_UNKNOWN, step, reason=f"STEP {step.id} is next; its gates are unknown without "
                         "a noxfile")
    if not step_gates:
        return Selection(NO_GATE, step, reason=f"STEP {step.id} has no gate: no nox session is tagged "
                         f"{step.id}, and a step without a gate is never ticked")
    return Selection(RUNNABLE, step, step_gates)
