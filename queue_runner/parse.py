"""Read a queue file into steps. Only a `### STEP <id>: <title>` heading outside any code
fence is a step, and its box is the line starting `Done: [ ]` (indenting allowed) inside the
fence that follows the heading. The QUEUE FORMAT template, the rules and the command block hold
`Done: [ ]` text too; they are not steps and are never read as boxes.

The parser works on bytes and records the byte offset of every box, so the editor can change
that one byte and nothing else (line endings, trailing spaces and a missing final newline
are never normalised)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from queue_runner.model import Problem, Queue, QueueError, Step

STEP_HEADING = re.compile(rb"^###[ \t]+STEP[ \t]+(?P<id>[A-Za-z]*\d+)[ \t]*:[ \t]*(?P<title>.*?)[ \t#]*$")
ANY_STEP_HEADING = re.compile(rb"^###[ \t]+STEP\b")
SECTION_HEADING = re.compile(rb"^#{1,2}[ \t]+(?P<name>.*?)[ \t#]*$")
FENCE_OPEN = re.compile(rb"^ {0,3}(?P<fence>`{3,}|~{3,})")
FIELD = re.compile(rb"^(?P<key>[A-Z][A-Za-z]*(?: [A-Za-z]+)*):(?P<value>.*)$")
BOX = re.compile(rb"^[ \t]*Done:[ \t]*\[(?P<mark>[ xX])\]")
# A line that starts like a box but is not one (`Done [ ]`, `Done: []`, `Done: [v]`): named in the
# no-box problem so the user sees which line to fix.
BOX_LIKE = re.compile(rb"^[ \t]*Done\b")
BOM = b"\xef\xbb\xbf"
DEPENDENCY = re.compile(r"\b(?:STEP\s+)?([A-Za-z]*\d+)\b")
PHASE_RANGE = re.compile(r"\s*\((?:Steps?|STEPS?)\b[^)]*\)\s*$")


def read(path: Path) -> Queue:
    """Parse the file at `path`. Unreadable files raise QueueError; a readable file always
    parses, with anything malformed listed in `Queue.problems`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QueueError(f"cannot read queue file {path}: {exc.strerror or exc}") from None
    return parse(data, path)


def parse(data: bytes, path: Path = Path("BACKEND_EXECUTION_QUEUE.md")) -> Queue:
    return _Parser(data, path).run()


def _lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset of the line, content without its line ending).
    bytes.splitlines only breaks on \\n, \\r\\n and \\r, unlike str.splitlines.
    A UTF-8 byte order mark at the start is not part of the first line (editors on Windows add
    one); the offsets still count it, so it stays in the file when a box is ticked."""
    offset = len(BOM) if data.startswith(BOM) else 0
    for number, raw in enumerate(data[offset:].splitlines(keepends=True), start=1):
        yield number, offset, raw.rstrip(b"\r\n")
        offset += len(raw)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class _StepBuilder:
    def __init__(self, step_id: str, title: str, phase: str | None, line: int) -> None:
        self.id = step_id
        self.title = title
        self.phase = phase
        self.line = line
        self.fields: dict[str, str] = {}
        self.boxes: list[tuple[int, int, bool]] = []  # (line, byte offset, ticked)
        self.box_like: list[tuple[int, str]] = []  # (line, text) of lines that almost are a box
        self.fenced = False
        self._key: str | None = None

    def feed(self, number: int, offset: int, content: bytes) -> None:
        box = BOX.match(content)
        if box:
            self.boxes.append((number, offset + box.start("mark"), box.group("mark") != b" "))
            self._key = None
            return
        if BOX_LIKE.match(content):
            self.box_like.append((number, _text(content).strip()))
            self._key = None
            return
        field = FIELD.match(content)
        if field:
            self._key = _text(field.group("key"))
            self.fields[self._key] = _text(field.group("value")).strip()
        elif self._key is not None and content.strip():
            # A continuation line (the Constraints list) belongs to the field above it.
            joined = self.fields[self._key] + "\n" + _text(content).rstrip()
            self.fields[self._key] = joined.lstrip("\n")

    def build(self, problems: list[Problem]) -> Step:
        def problem(code: str, message: str, line: int | None = None) -> None:
            problems.append(Problem(code, message, line or self.line, self.id))

        if not self.fenced:
            problem("no-fence", f"STEP {self.id} has no code fence after its heading")
        box_offset: int | None = None
        done = False
        if not self.boxes and self.box_like:
            number, text = self.box_like[0]
            problem("no-box", f"STEP {self.id}: line {number} `{text}` is not a box; write `Done: [ ]` "
                    "(or `Done: [x]`)", number)
        elif not self.boxes and self.fenced:
            problem("no-box", f"STEP {self.id} has no `Done: [ ]` line in its fence")
        elif len(self.boxes) > 1:
            lines = ", ".join(str(b[0]) for b in self.boxes)
            problem("several-boxes", f"STEP {self.id} has {len(self.boxes)} Done lines (lines {lines})")
        elif self.boxes:
            _, box_offset, done = self.boxes[0]
        depends: tuple[str, ...] = ()
        if "Depends" not in self.fields:
            if self.fenced:
                problem("no-depends", f"STEP {self.id} has no Depends line")
        else:
            value = self.fields["Depends"].strip().strip("\"'")
            if value.lower() not in ("none", ""):
                depends = tuple(DEPENDENCY.findall(value))
                if not depends:
                    problem("bad-depends", f"STEP {self.id}: cannot read a step id in Depends: {value!r}")
            elif not value:
                problem("bad-depends", f"STEP {self.id}: Depends is empty (write `none`)")
        return Step(self.id, self.title, self.phase, self.line, dict(self.fields), depends, done, box_offset)


class _Parser:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.steps: list[Step] = []
        self.problems: list[Problem] = []

    def run(self) -> Queue:
        phase: str | None = None
        fence: bytes | None = None  # the opening fence while inside one
        fence_line = 0
        pending: _StepBuilder | None = None  # heading seen, its fence not yet opened
        current: _StepBuilder | None = None  # inside this step's fence

        for number, offset, content in _lines(self.data):
            if fence is not None:
                if _closes(content, fence):
                    fence = None
                    if current is not None:
                        self.steps.append(current.build(self.problems))
                        current = None
                elif current is not None:
                    current.feed(number, offset, content)
                continue

            opener = FENCE_OPEN.match(content)
            if pending is not None:
                if not content.strip():
                    continue
                if opener:
                    pending.fenced = True
                    current, pending = pending, None
                    fence, fence_line = opener.group("fence"), number
                    continue
                self.steps.append(pending.build(self.problems))
                pending = None
            if opener:
                fence, fence_line = opener.group("fence"), number
                continue

            heading = STEP_HEADING.match(content)
            if heading:
                pending = _StepBuilder(_text(heading.group("id")), _text(heading.group("title")), phase, number)
            elif ANY_STEP_HEADING.match(content):
                self.problems.append(Problem(
                    "malformed-heading", f"line {number}: a STEP heading needs `### STEP <id>: <title>`",
                    number))
            else:
                section = SECTION_HEADING.match(content)
                if section:
                    # Any `##` heading names the phase of the steps under it (`## PHASE 1: API`,
                    # `## BOOTSTRAP PHASE (Steps 001-010)`), and so does `# PHASE …`; any other
                    # `#` title starts a new part of the document, outside every phase.
                    name = PHASE_RANGE.sub("", _text(section.group("name")))
                    names_phase = content.startswith(b"##") or name.upper().startswith("PHASE")
                    phase = (name or None) if names_phase else None

        if fence is not None:
            owner = current.id if current is not None else None
            self.problems.append(Problem("unclosed-fence", f"the code fence opened on line {fence_line} "
                                         "is never closed", fence_line, owner))
            if current is not None:
                self.steps.append(current.build(self.problems))
        if pending is not None:
            self.steps.append(pending.build(self.problems))
        return Queue(self.path, self.data, tuple(self.steps), tuple(self.problems))


def _closes(content: bytes, opener: bytes) -> bool:
    stripped = content.lstrip(b" ")
    if len(content) - len(stripped) > 3:
        return False
    run = len(stripped) - len(stripped.lstrip(opener[:1]))
    return run >= len(opener) and not stripped[run:].strip()
