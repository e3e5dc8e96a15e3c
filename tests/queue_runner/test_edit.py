"""Ticking rewrites exactly one byte, refuses a file that changed since it was read, and keeps
line endings, trailing spaces and a missing final newline."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queue_runner import edit, parse
from queue_runner.model import QueueError
from tests.queue_runner.conftest import GOLDEN, ROOT

GOLDEN_INPUTS = ["user_queue.md", "crlf_queue.md", "no_final_newline.md", "decoys.md", "frontend_queue.md"]


def differing_bytes(a: bytes, b: bytes) -> list[int]:
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_tick_changes_exactly_one_byte_of_each_golden_file(tmp_path, name):
    path = tmp_path / name
    shutil.copyfile(GOLDEN / name, path)
    original = path.read_bytes()
    queue = parse.read(path)
    step = next(s for s in reversed(queue.steps) if not s.done)

    written = edit.tick(queue, step)

    after = path.read_bytes()
    assert after == written
    assert differing_bytes(original, after) == [step.box_offset]
    assert after[step.box_offset:step.box_offset + 1] == b"x"
    reread = parse.read(path)
    assert [s.id for s in reread.steps if s.done] == sorted(queue.done_ids | {step.id},
                                                           key=[s.id for s in queue.steps].index)


def test_tick_keeps_crlf_trailing_spaces_and_the_missing_final_newline(tmp_path):
    for name in ("crlf_queue.md", "no_final_newline.md"):
        path = tmp_path / name
        shutil.copyfile(GOLDEN / name, path)
        queue = parse.read(path)
        for step in [s for s in queue.steps if not s.done]:
            queue = parse.read(path)
            edit.tick(queue, queue.get(step.id))
        after = path.read_bytes()
        before = (GOLDEN / name).read_bytes()
        assert after.count(b"\r\n") == before.count(b"\r\n")
        assert after.endswith(b"```") == before.endswith(b"```")
        assert after.replace(b"Done: [x]", b"Done: [ ]") == before.replace(b"Done: [x]", b"Done: [ ]")
        assert all(s.done for s in parse.read(path).steps)
    assert b"Done: [x]   \r\n" in (tmp_path / "crlf_queue.md").read_bytes()


def test_tick_refuses_a_file_changed_since_it_was_read(tmp_path):
    path = tmp_path / "queue.md"
    shutil.copyfile(GOLDEN / "decoys.md", path)
    queue = parse.read(path)
    path.write_bytes(path.read_bytes() + b"\nsomeone else's edit\n")
    changed = path.read_bytes()

    with pytest.raises(edit.QueueChanged):
        edit.tick(queue, queue.get("D001"))

    assert path.read_bytes() == changed
    assert sorted(os.listdir(tmp_path)) == ["queue.md"]  # no temporary file left behind


def test_tick_refuses_a_ticked_box(tmp_path):
    path = tmp_path / "queue.md"
    shutil.copyfile(GOLDEN / "decoys.md", path)
    queue = parse.read(path)
    with pytest.raises(QueueError):
        edit.tick(queue, queue.get("D002"))
    assert path.read_bytes() == (GOLDEN / "decoys.md").read_bytes()


def test_tick_keeps_the_file_mode_and_writes_through_a_symlink(tmp_path):
    target = tmp_path / "real.md"
    shutil.copyfile(GOLDEN / "no_final_newline.md", target)
    target.chmod(0o640)
    link = tmp_path / "link.md"
    link.symlink_to(target)
    queue = parse.read(link)

    edit.tick(queue, queue.get("T002"))

    assert link.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert parse.read(target).get("T002").done


def test_tick_refuses_a_file_whose_mode_says_read_only(tmp_path):
    """Replacing the file would work in a writable folder (and keep 0444); the mode says no."""
    path = tmp_path / "queue.md"
    shutil.copyfile(GOLDEN / "decoys.md", path)
    queue = parse.read(path)
    path.chmod(0o444)  # after reading: as if someone protected it while the gates ran
    with pytest.raises(edit.QueueUnwritable, match=r"read-only \(mode 0444\)"):
        edit.tick(queue, queue.get("D001"))
    assert path.read_bytes() == (GOLDEN / "decoys.md").read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(os.listdir(tmp_path)) == ["queue.md"]


def test_project_queue_ticks_one_byte(tmp_path):
    path = tmp_path / "BACKEND_EXECUTION_QUEUE.md"
    shutil.copyfile(ROOT / "BACKEND_EXECUTION_QUEUE.md", path)
    # The live queue may be fully ticked: clear one box (by its offset) to tick it again.
    step = parse.read(path).steps[-1]
    data = bytearray(path.read_bytes())
    data[step.box_offset:step.box_offset + 1] = b" "
    path.write_bytes(bytes(data))
    queue = parse.read(path)
    step = next(s for s in queue.steps if not s.done)
    original = path.read_bytes()
    edit.tick(queue, step)
    assert differing_bytes(original, path.read_bytes()) == [step.box_offset]


# --- any queue, any line ending, any decoy ---------------------------------------------------

EOLS = st.sampled_from(["\n", "\r\n", "\r"])
TRAILING = st.sampled_from(["", " ", "  ", "\t", " \t "])
INDENT = st.sampled_from(["", " ", "\t", "    "])
DECOYS = st.sampled_from([
    "Done: [ ] in prose", "```\nDone: [ ]\n```", "~~~\n### STEP Z999: fenced\nDone: [ ]\n~~~",
    "    ### STEP Z998: indented\n    Done: [ ]", "## PHASE 7: NOISE", "text with Done: [x] inside", ""])


@st.composite
def queues(draw):
    count = draw(st.integers(min_value=1, max_value=6))
    eol = draw(EOLS)
    lines: list[str] = []
    boxes = []
    for n in range(count):
        lines.append(draw(DECOYS))
        done = draw(st.booleans())
        boxes.append(done)
        title = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20))
        for line in (f"### STEP Q{n:03d}: {title}", "```", "Input: x",
                     f"Depends: {'none' if n == 0 else f'STEP Q{n - 1:03d}'}",
                     "Constraints:", "  - Done: [ ] is a constraint here",
                     f"{draw(INDENT)}Done: [{'x' if done else ' '}]", "```"):
            lines.append(line + draw(TRAILING))
    text = eol.join(lines) + draw(st.sampled_from(["", eol]))
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text.encode("utf-8"), boxes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=queues(), pick=st.integers(min_value=0))
def test_any_queue_ticks_exactly_one_byte(tmp_path, case, pick):
    data, boxes = case
    path = tmp_path / "q.md"
    path.write_bytes(data)
    queue = parse.read(path)
    assert [s.done for s in queue.steps] == boxes
    assert queue.problems == ()
    empty = [s for s in queue.steps if not s.done]
    if not empty:
        return
    step = empty[pick % len(empty)]
    edit.tick(queue, step)
    assert differing_bytes(data, path.read_bytes()) == [step.box_offset]
    assert [s.done for s in parse.read(path).steps] == [d or s.id == step.id for d, s in zip(boxes, queue.steps,
                                                                                              strict=True)]
