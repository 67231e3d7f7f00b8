"""The console screens: what stays on the terminal when a reply streams, is taken over, or stops.

A rich Console writing to a file (not a terminal) shows what is printed for good and nothing of
the live region, which is exactly what stays in the terminal's scrollback.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from adapters.console import ConsoleSink, PlainScreen, TerminalScreen, settled_end
from core import ApprovalRequest, ConversationKey, Decision


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("one paragraph, still being written", ""),
        ("first\n\nsecond, still being", "first\n\n"),
        ("first\n\n", ""),  # the next block might be a continuation: wait for it
        ("a\n\nb\n\nc", "a\n\nb\n\n"),
        ("- item\n\n  more of the item\n\nnext", "- item\n\n  more of the item\n\n"),
        ("```\ncode\n\nstill code\n", ""),  # a blank line inside a fence ends nothing
        ("```\ncode\n\nmore\n```\nafter", "```\ncode\n\nmore\n```\n"),
        ("~~~~\n~~~\n~~~~\nafter", "~~~~\n~~~\n~~~~\n"),  # a shorter fence does not close a longer one
        ("text\n```", ""),  # a fence still opening
    ],
)
def test_complete_blocks(text: str, complete: str) -> None:
    assert text[: settled_end(text)] == complete


def test_complete_blocks_from_a_boundary() -> None:
    text = "a\n\nb\n\nc\n\nd"
    assert settled_end(text, 3) == len("a\n\nb\n\nc\n\n")


def screen() -> tuple[TerminalScreen, io.StringIO]:
    out = io.StringIO()
    return TerminalScreen(Console(file=out, width=60, color_system=None, force_terminal=False)), out


def lines(out: io.StringIO) -> list[str]:
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_a_streamed_reply_is_printed_block_by_block_once() -> None:
    term, out = screen()
    owner = object()
    term.working(owner)
    term.update(owner, "First **paragraph**.\n\nSecond")
    assert lines(out) == ["First paragraph."]  # complete: printed for good; the rest is live
    term.update(owner, "First **paragraph**.\n\nSecond paragraph.\n\n- one\n- two")
    term.finish(owner, "First **paragraph**.\n\nSecond paragraph.\n\n- one\n- two\n\n⏹ Stopped.")
    assert lines(out) == ["First paragraph.", "", "Second paragraph.", "", " • one", " • two", "", "⏹ Stopped.", ""]


def test_line_breaks_stay_line_breaks() -> None:
    term, out = screen()
    owner = object()
    term.finish(owner, "🔧 Read `a.py`\n🔧 Bash `ls`")
    assert lines(out) == ["🔧 Read a.py", "🔧 Bash ls", ""]


def test_a_reply_taken_over_then_finished_adds_only_what_is_new() -> None:
    term, out = screen()
    first, second = object(), object()
    term.update(first, "Working on it")
    term.update(second, "Another reply")  # the first one is printed as it is
    assert lines(out) == ["Working on it", ""]
    term.finish(first, "Working on it\n\n⏹ Stopped.")
    term.finish(second, "Another reply, done.")
    assert lines(out) == ["Working on it", "", "⏹ Stopped.", "", "Another reply, done.", ""]


def test_after_closing_a_reply_still_ending_prints_only_its_end() -> None:
    term, out = screen()
    owner = object()
    term.update(owner, "Once upon a time")
    term.close()
    term.finish(owner, "Once upon a time\n\n⏹ Stopped.")
    assert lines(out) == ["Once upon a time", "", "⏹ Stopped.", ""]


def test_notices_print_above_and_an_owners_first_output_ends_its_placeholder() -> None:
    term, out = screen()
    owner, other = object(), object()
    term.working(owner)
    term.notice(other, "⏳ Queued — I'll answer after the current reply (1 ahead).")
    term.notice(owner, "echo: at once")  # the whole reply came without a live update
    assert lines(out) == ["⏳ Queued — I'll answer after the current reply (1 ahead).", "", "echo: at once", ""]
    term.update(owner, "late text")  # a new reply of the same sink starts fresh
    term.idle()
    assert lines(out)[-2:] == ["late text", ""]


def _request() -> ApprovalRequest:
    return ApprovalRequest(
        id="r1", key=ConversationKey("console", "me"), requested_by="me", tool_name="Bash",
        summary="ls", input={"command": "ls"}, timeout=30,
    )  # fmt: skip


def test_an_approval_prints_the_reply_so_far_then_the_question() -> None:
    term, out = screen()
    owner = object()
    settled: list[ApprovalRequest] = []
    term.on_settled = settled.append
    term.update(owner, "Let me look.\n\n🔧 Bash `ls`")
    request = _request()
    term.ask(request)
    assert term.pending == [request] and term.approval_asked.is_set()
    request.decision, request.decided_by = Decision.ALLOW_ONCE, "me"
    term.settled(request)
    assert term.pending == [] and settled == [request]
    text = lines(out)
    assert text[:3] == ["Let me look.", "", "🔧 Bash ls"]
    assert text[3].startswith("🔐 Claude wants to use Bash") and text[4].startswith("🔐 Allowed once")
    term.resume()
    term.finish(owner, "Let me look.\n\n🔧 Bash `ls`\n\nDone.")
    assert lines(out)[-2:] == ["Done.", ""]


async def test_piped_output_is_each_final_text_once(tmp_path: Path) -> None:
    out = io.StringIO()
    sink = ConsoleSink(PlainScreen(out))
    await sink.typing()
    handle = await sink.post("partial")
    await sink.edit(handle, "partial **text**")
    assert out.getvalue() == ""
    await sink.finalize(handle, "partial **text**, complete")
    await sink.finalize(None, "a notice")
    await sink.send_file(tmp_path / "report.pdf", "the report")
    assert out.getvalue().splitlines() == [
        "partial **text**, complete",
        "a notice",
        f"📎 {tmp_path}/report.pdf — the report",
    ]
