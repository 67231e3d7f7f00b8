"""The reply-sink contract, run against every adapter's sink.

An adapter's test module subclasses :class:`SinkContract` and provides a
``harness`` fixture implementing :class:`SinkHarness` on top of its fake
platform server (the real SDK talking to a fake server on 127.0.0.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from core import (
    ApprovalRequest,
    ConversationKey,
    Decision,
    MessageGone,
    RateLimited,
    ReplySink,
    ReplyStreamer,
    TextDelta,
    TurnResult,
)
from core.text_split import open_fence


class SinkHarness(Protocol):
    async def new_sink(self) -> ReplySink:
        """A sink replying into a fresh chat/thread (fast limits are fine)."""

    async def messages(self) -> list[str]:
        """The texts the platform shows in that chat, oldest first (rendered text is fine)."""

    async def rate_limit_next(self, op: str, retry_after: float) -> None:
        """Make the platform answer the next ``op`` ("post", "edit" or "finalize") with a rate limit."""

    async def approvals(self) -> list[str]:
        """Approval prompts as shown (including the decision once made)."""

    async def files(self) -> list[str]:
        """Names of files uploaded to the chat."""

    async def gone_next(self, op: str) -> None:
        """Make the platform answer the next ``op`` ("edit" or "finalize") as if the message was deleted."""

    async def api_calls(self) -> int:
        """How many requests that change a message the platform has received so far (typing aside)."""


def _request(decision: Decision | None = None) -> ApprovalRequest:
    req = ApprovalRequest(
        id="req1",
        key=ConversationKey("test", "u1"),
        requested_by="u1",
        tool_name="Bash",
        summary="ls -la",
        input={"command": "ls -la"},
        timeout=30,
    )
    if decision is not None:
        req.decision, req.decided_by = decision, "u1"
    return req


async def _events(*items):
    for item in items:
        yield item


def _normalize(text: str) -> str:
    return "".join(text.split())


class SinkContract:
    async def test_post_edit_finalize_one_message(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        handle = await sink.post("Hello")
        await sink.edit(handle, "Hello world")
        await sink.finalize(handle, "Hello world, done")
        shown = await harness.messages()
        assert len(shown) == 1
        assert "Hello world, done" in shown[0]

    async def test_identical_edit_is_a_noop(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        handle = await sink.post("same text")
        before = await harness.api_calls()
        await sink.edit(handle, "same text")
        await sink.edit(handle, "same text")
        assert await harness.api_calls() == before  # nothing was sent for an edit that changes nothing
        await sink.finalize(handle, "same text")  # no "message is not modified" error escapes
        assert [_normalize(m) for m in await harness.messages()] == ["sametext"]

    async def test_finalize_without_handle_sends_a_new_message(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        await sink.finalize(None, "a notice")
        await sink.finalize(None, "another notice")
        shown = await harness.messages()
        assert any("a notice" in m for m in shown) and any("another notice" in m for m in shown)

    async def test_rate_limit_surfaces_as_RateLimited(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        handle = await sink.post("first")
        await harness.rate_limit_next("edit", 2)
        with pytest.raises(RateLimited) as info:
            await sink.edit(handle, "second")
        assert info.value.retry_after >= 1

    async def test_streamer_delivers_final_text_through_a_rate_limit(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        await harness.rate_limit_next("edit", 1)
        await harness.rate_limit_next("finalize", 1)
        words = [f"word{i} " for i in range(30)]
        events = [TextDelta(w) for w in words] + [TurnResult(text="".join(words), session_id="s")]
        await ReplyStreamer(sink, verbosity="normal").run(_events(*events))
        shown = await harness.messages()
        assert _normalize("".join(words)) in _normalize("".join(shown))

    async def test_streamer_splits_long_replies_keeping_code_fences(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        limit = sink.limits.max_len
        code = "\n".join(f"print('line {i}')" for i in range(limit // 12))
        text = "Here is the code:\n\n```python\n" + code + "\n```\n\nThat's all."
        await ReplyStreamer(sink).run(_events(TextDelta(text), TurnResult(text=text, session_id="s")))
        shown = await harness.messages()
        assert len(shown) >= 2
        for message in shown:
            assert sink.limits.measure(message) <= limit
        joined = _normalize("".join(shown))
        for i in range(limit // 12):
            assert f"print('line{i}')" in joined
        assert "That'sall." in joined

    async def test_an_edit_of_a_deleted_message_raises_MessageGone(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        handle = await sink.post("first")
        await harness.gone_next("edit")
        if getattr(harness, "drafts", False):
            # live updates are drafts (nothing to delete): the sink falls back to a message of its own
            await sink.edit(handle, "first and more")
            await sink.finalize(handle, "first and more")
            assert any("first and more" in m for m in await harness.messages())
            return
        with pytest.raises(MessageGone):
            await sink.edit(handle, "first and more")

    async def test_streamer_continues_in_a_new_message_when_one_is_gone(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        await harness.gone_next("edit")
        await harness.gone_next("finalize")
        words = [f"part{i} " for i in range(40)]
        events = [TextDelta(w) for w in words] + [TurnResult(text="".join(words), session_id="s")]
        await ReplyStreamer(sink, verbosity="normal").run(_events(*events))
        shown = _normalize("".join(await harness.messages()))
        assert _normalize("".join(words)) in shown  # the whole reply, in one piece, in the new message

    async def test_approval_prompt_then_decision(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        await sink.show_approval(_request())
        await sink.show_approval(_request(Decision.DENY))
        shown = " ".join(await harness.approvals())
        assert "Bash" in shown and "Denied" in shown

    async def test_send_file(self, harness: SinkHarness, tmp_path: Path) -> None:
        sink = await harness.new_sink()
        path = tmp_path / "report.txt"
        path.write_text("numbers\n")
        await sink.send_file(path, "the report")
        assert "report.txt" in await harness.files()

    async def test_typing_never_raises(self, harness: SinkHarness) -> None:
        sink = await harness.new_sink()
        await sink.typing()


def fences_balanced(text: str) -> bool:
    return open_fence(text) is None
