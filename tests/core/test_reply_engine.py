"""The streaming reply engine against a recording sink, on a virtual clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core import (
    ApprovalRequest,
    ApprovalRequested,
    ApprovalResolved,
    ConversationKey,
    Decision,
    FileOffered,
    MessageGone,
    RateLimited,
    ReplyStreamer,
    SinkError,
    SinkLimits,
    TextDelta,
    ToolResult,
    ToolUse,
    TurnError,
    TurnResult,
    send_notice,
)
from core.text_split import open_fence
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually

T = TypeVar("T")


class VirtualClock:
    """Discrete-event time: sleepers wake in order, time jumps when every task waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def run(self, coro: Awaitable[T]) -> T:
        task = asyncio.ensure_future(coro)
        while not task.done():
            for _ in range(20):  # let every runnable task run until all of them wait
                await asyncio.sleep(0)
            if task.done() or not self._sleepers:
                continue
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            future.set_result(None)
        return task.result()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def make_sink(clock: VirtualClock, max_len: int = 200, interval: float = 1.0) -> RecordingSink:
    return RecordingSink(limits=SinkLimits(max_len=max_len, min_edit_interval=interval, typing_interval=0), clock=clock)


async def feed(clock: VirtualClock, items: list[Any], gap: float = 0.0) -> AsyncIterator[Any]:
    for item in items:
        yield item
        await clock.sleep(gap)  # time passes between events (0: they arrive together)


def result(text: str = "", **kw: Any) -> TurnResult:
    return TurnResult(text=text, session_id="s", **kw)


async def stream(sink: RecordingSink, clock: VirtualClock, items: list[Any], gap: float = 0.0, **kw: Any) -> Any:
    streamer = ReplyStreamer(sink, clock=clock, sleep=clock.sleep, **kw)
    return await clock.run(streamer.run(feed(clock, items, gap)))


async def test_first_update_goes_out_without_waiting(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    await stream(sink, clock, [TextDelta("Hello"), TextDelta(" world"), result("Hello world")], gap=0.2)
    ops = sink.text_ops()
    assert ops[0].name == "post" and ops[0].at == 0.0
    assert ops[-1].name == "finalize" and ops[-1].text == "Hello world"
    assert sink.visible() == ["Hello world"]


async def test_updates_are_coalesced_to_the_minimum_interval(clock: VirtualClock) -> None:
    sink = make_sink(clock, max_len=10_000)
    words = [TextDelta(f"w{i} ") for i in range(100)]
    await stream(sink, clock, words + [result()], gap=0.1)
    ops = sink.text_ops()
    times = [o.at for o in ops]
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(times, times[1:], strict=False)), times
    assert len(ops) <= 100 * 0.1 / 1.0 + 3  # ~one update per second, not one per delta
    assert sink.visible() == ["".join(w.text for w in words)]


async def test_rate_limited_edit_pushes_the_next_update_back_and_final_is_complete(clock: VirtualClock) -> None:
    sink = make_sink(clock, max_len=10_000)
    sink.fail("edit", RateLimited(5))
    words = [TextDelta(f"w{i} ") for i in range(40)]
    await stream(sink, clock, words + [result()], gap=0.1)
    failed = next(o for o in sink.ops if not o.ok)
    later = [o for o in sink.text_ops() if o.at > failed.at]
    assert later and later[0].at >= failed.at + 5
    assert sink.visible() == ["".join(w.text for w in words)]


async def test_final_text_survives_repeated_rate_limits_on_finalize(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    sink.fail("finalize", RateLimited(3), RateLimited(7), RateLimited(1))
    await stream(sink, clock, [TextDelta("the answer is 42"), result()])
    assert sink.visible() == ["the answer is 42"]
    assert sink.final[1] is True
    assert clock.now >= 11


async def test_final_text_becomes_a_new_message_when_the_old_one_is_gone(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    sink.fail("finalize", MessageGone("deleted"))
    await stream(sink, clock, [TextDelta("partial"), TextDelta(" and complete"), result()])
    assert sink.visible()[-1] == "partial and complete"
    assert sink.final[max(sink.messages)] is True


async def test_broken_edits_degrade_to_a_final_new_message(clock: VirtualClock) -> None:
    sink = make_sink(clock, max_len=10_000)
    sink.fail("edit", SinkError("edit window closed"))
    words = [TextDelta(f"w{i} ") for i in range(20)]
    await stream(sink, clock, words + [result()], gap=0.2)
    assert sink.visible()[-1] == "".join(w.text for w in words)
    assert [o.name for o in sink.text_ops()].count("edit") == 0


async def test_an_unexpected_sink_exception_still_delivers_the_final_text(clock: VirtualClock) -> None:
    sink = make_sink(clock, max_len=10_000)
    sink.fail("edit", RuntimeError("a bug in the platform code"))
    words = [TextDelta(f"w{i} ") for i in range(10)]
    await stream(sink, clock, words + [result()], gap=0.5)
    assert sink.visible()[-1] == "".join(w.text for w in words)
    assert sink.final[max(sink.messages)] is True


async def test_persistent_finalize_failure_falls_back_to_a_new_message(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    sink.fail("finalize", SinkError("500"), SinkError("500"))
    await stream(sink, clock, [TextDelta("keep me"), result()])
    finals = [o for o in sink.text_ops() if o.name == "finalize"]
    assert finals and finals[-1].text == "keep me" and finals[-1].handle != 1


async def test_long_replies_split_without_breaking_code_fences(clock: VirtualClock) -> None:
    sink = make_sink(clock, max_len=120, interval=0.5)
    code = "\n".join(f"x = {i} * {i}" for i in range(40))
    text = "Intro line.\n\n```python\n" + code + "\n```\n\nOutro line."
    chunks = [TextDelta(text[i : i + 7]) for i in range(0, len(text), 7)]
    await stream(sink, clock, chunks + [result(text)], gap=0.05)
    shown = sink.visible()
    assert len(shown) >= 4
    for message in shown:
        assert len(message) <= 120
        assert open_fence(message) is None, message
    assert all(sink.final.values())
    body = "".join(shown)
    for i in range(40):
        assert f"x = {i} * {i}" in body
    assert shown[0].startswith("Intro line.") and shown[-1].endswith("Outro line.")
    assert all(m.startswith("```python") for m in shown[1:-1])


async def test_tool_activity_by_verbosity(clock: VirtualClock) -> None:
    items = [
        TextDelta("Checking."),
        ToolUse("t1", "Bash", "ls -la"),
        ToolResult("t1", "Bash", False, "a.txt b.txt"),
        ToolUse("t2", "Read", "secret.txt"),
        ToolResult("t2", "Read", True, "denied by policy"),
        TextDelta("Done.", new_block=True),
        result(),
    ]
    quiet, normal, verbose = make_sink(clock), make_sink(clock), make_sink(clock)
    await stream(quiet, clock, items, verbosity="quiet")
    await stream(normal, clock, items, verbosity="normal")
    await stream(verbose, clock, items, verbosity="verbose")
    assert quiet.visible() == ["Checking.\n\nDone."]
    assert normal.visible() == ["Checking.\n\n🔧 Bash `ls -la`\n🔧 Read `secret.txt`\n   ↳ ✗ denied by policy\n\nDone."]
    assert "↳ ✓ a.txt b.txt" in verbose.visible()[0]
    assert "↳ ✗ denied by policy" in verbose.visible()[0]


@pytest.mark.parametrize(
    ("terminal", "expected"),
    [
        (
            TurnError("Claude Code stopped unexpectedly (exit -9)", kind="unavailable"),
            "⚠️ Error: Claude Code stopped unexpectedly (exit -9)",
        ),
        (result(is_error=True, error="API Error: 529 overloaded"), "⚠️ Error: API Error: 529 overloaded"),
        (result(interrupted=True), "⏹ Stopped."),
    ],
)
async def test_errors_end_the_message_with_a_clear_line(clock: VirtualClock, terminal: Any, expected: str) -> None:
    sink = make_sink(clock)
    returned = await stream(sink, clock, [TextDelta("partial answer"), terminal])
    assert returned is terminal
    assert sink.visible() == [f"partial answer\n\n{expected}"]


async def test_a_failing_event_source_still_ends_the_reply(clock: VirtualClock) -> None:
    sink = make_sink(clock)

    async def broken() -> AsyncIterator[Any]:
        yield TextDelta("so far")
        raise RuntimeError("boom")

    terminal = await clock.run(ReplyStreamer(sink, clock=clock, sleep=clock.sleep).run(broken()))
    assert isinstance(terminal, TurnError)
    assert sink.visible()[-1].startswith("so far\n\n⚠️ Error: internal error")


async def test_empty_turn_says_so(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    await stream(sink, clock, [result()])
    assert sink.visible() == ["(no reply text)"]


async def test_show_cost(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    await stream(sink, clock, [TextDelta("hi"), result(cost_usd=0.0123, duration_ms=2500)], show_cost=True)
    assert sink.visible() == ["hi\n\n_$0.0123 · 2.5s_"]


async def test_approvals_and_files_are_shown_in_order(clock: VirtualClock, tmp_path: Path) -> None:
    sink = make_sink(clock)
    request = ApprovalRequest(
        id="r1",
        key=ConversationKey("t", "u"),
        requested_by="u",
        tool_name="Bash",
        summary="rm -rf build",
        input={},
        timeout=30,
    )
    decided = ApprovalRequest(**{**request.__dict__, "decision": Decision.ALLOW_ONCE, "decided_by": "u"})
    await stream(
        sink,
        clock,
        [
            TextDelta("I need to clean up."),
            ApprovalRequested(request),
            ApprovalResolved(decided),
            FileOffered(tmp_path / "report.pdf", "the report"),
            TextDelta("Cleaned.", new_block=True),
            result(),
        ],
    )
    names = [o.name for o in sink.ops if o.name != "typing"]
    first_approval = names.index("approval")
    assert "post" in names[:first_approval]  # text before the question is shown first
    assert sink.approvals == ["Bash: rm -rf build -> Waiting for approval", "Bash: rm -rf build -> Allowed once by u"]
    assert sink.files == ["report.pdf"]
    assert sink.visible()[-1] == "I need to clean up.\n\nCleaned."


async def test_typing_is_shown_while_working(clock: VirtualClock) -> None:
    sink = make_sink(clock)
    await stream(sink, clock, [TextDelta("x"), result()])
    assert any(o.name == "typing" for o in sink.ops)


async def test_send_notice_waits_out_rate_limits() -> None:
    sink = RecordingSink()
    sink.fail("finalize", RateLimited(0.01), RateLimited(0.01))
    assert await send_notice(sink, "queued") is True
    assert sink.visible() == ["queued"]
    broken = RecordingSink()
    broken.fail("finalize", SinkError("nope"))
    assert await send_notice(broken, "lost") is False


async def test_text_that_grows_while_an_update_waits_is_split_again_before_sending(clock: VirtualClock) -> None:
    """An update waits out the edit interval (here: for an approval prompt to follow it); text that
    arrived meanwhile and pushed the message past the limit must be split again, never sent whole."""
    sink = make_sink(clock, max_len=100, interval=1.0)
    request = ApprovalRequest("r1", ConversationKey("t", "u"), "u", "Bash", "ls", {}, 30)

    async def timeline() -> AsyncIterator[Any]:
        yield TextDelta("a" * 60 + " ")  # t=0: posted at once
        await clock.sleep(0.1)
        yield TextDelta("b" * 30 + " ")  # pending: the next update may go at t=1
        yield ApprovalRequested(request)  # the prompt must follow the text: the update waits for t=1
        await clock.sleep(0.4)
        yield TextDelta("c" * 40 + " ")  # arrives during that wait: now 130+ characters
        await clock.sleep(2.0)
        yield result("done")

    streamer = ReplyStreamer(sink, clock=clock, sleep=clock.sleep)
    await clock.run(streamer.run(timeline()))
    ops = sink.text_ops()
    assert ops and all(len(op.text) <= 100 for op in ops), [(op.name, len(op.text)) for op in ops]
    shown = "".join(sink.visible())
    assert shown.count("a") == 60 and shown.count("b") == 30 and shown.count("c") == 40


async def test_a_reply_cancelled_mid_stream_ends_saying_it_stopped() -> None:
    """A bot stopping after its drain cancels the turns left: what is shown gets its final form
    (so a Feishu card leaves streaming mode, a Slack stream stops), and says it stopped."""
    sink = RecordingSink(limits=SinkLimits(max_len=200, min_edit_interval=0.0, typing_interval=0))
    shown = asyncio.Event()

    async def events() -> AsyncIterator[Any]:
        yield TextDelta("working on it")
        shown.set()
        await asyncio.Event().wait()  # the turn hangs
        yield result()

    running = asyncio.create_task(ReplyStreamer(sink).run(events()))
    await shown.wait()
    await eventually(lambda: sink.visible() == ["working on it"], what="the first update")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sink.visible() == ["working on it\n\n⏹ Stopped."] and all(sink.final.values())


async def test_a_reply_cancelled_before_anything_was_shown_sends_nothing() -> None:
    sink = RecordingSink(limits=SinkLimits(max_len=200, min_edit_interval=0.0, typing_interval=0))

    async def events() -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield result()

    running = asyncio.create_task(ReplyStreamer(sink).run(events()))
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert sink.visible() == []
