"""The Slack sink beyond the shared contract: error mapping, fallbacks, the working indicator, files."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import Capabilities, SinkOptions, SlackSink, SlackTarget
from adapters.slack.files import FileFetcher, FileRejected, SlackFile
from core import ApprovalRequest, ConversationKey, Decision, MessageGone, RateLimited, SinkError

from .fake_slack import BOT_TOKEN, TEAM, FakeSlack

CHANNEL = "C0SINK"


def bash_approval(request_id: str, root: str, summary: str, input: dict[str, object] | None = None) -> ApprovalRequest:
    """U1's pending request to run Bash, in the thread ``root`` of CHANNEL."""
    key = ConversationKey("slack", CHANNEL, root)
    return ApprovalRequest(
        id=request_id, key=key, requested_by="U1", tool_name="Bash", summary=summary, input=input or {}, timeout=30
    )


def make_sink(
    fake: FakeSlack, *, thread: bool = True, streaming: bool = True, caps: Capabilities | None = None
) -> tuple[SlackSink, str]:
    root = fake.user_message(CHANNEL, "U1", "question").ts
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
    target = SlackTarget(CHANNEL, root if thread else None, "U1", TEAM, root)
    return SlackSink(client, target, SinkOptions(streaming=streaming, edit_interval=0.05), caps or Capabilities()), root


async def test_errors_map_to_the_core_tree(slack: FakeSlack) -> None:
    sink, _ = make_sink(slack, streaming=False)
    handle = await sink.post("one")
    slack.fail_next("chat.update", "message_not_found")
    with pytest.raises(MessageGone):
        await sink.edit(handle, "one two")
    slack.fail_next("chat.update", "cant_update_message")
    with pytest.raises(MessageGone):
        await sink.finalize(handle, "one two three")
    slack.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SinkError) as info:
        await sink.finalize(None, "x")
    assert info.value.code == "channel_not_found" and not isinstance(info.value, (RateLimited, MessageGone))
    slack.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(RateLimited) as limited:
        await sink.post("y")
    assert limited.value.retry_after == 7


async def test_a_refused_stream_start_switches_every_sink_to_edits(slack: FakeSlack) -> None:
    caps = Capabilities()
    sink, root = make_sink(slack, caps=caps)
    slack.fail_next("chat.startStream", "not_allowed_token_type")
    handle = await sink.post("hello")
    await sink.edit(handle, "hello world")
    await sink.finalize(handle, "hello world!")
    assert slack.replies(CHANNEL, root) == ["hello world!"] and not caps.streaming
    other, other_root = make_sink(slack, caps=caps)
    await other.finalize(await other.post("second"), "second reply")
    assert len(slack.called("chat.startStream")) == 1 and slack.replies(CHANNEL, other_root) == ["second reply"]


async def test_a_stream_refused_in_one_conversation_only_affects_that_reply(slack: FakeSlack) -> None:
    caps = Capabilities()
    sink, root = make_sink(slack, caps=caps)
    slack.fail_next("chat.startStream", "invalid_arguments")
    await sink.finalize(await sink.post("edited"), "edited reply")
    assert slack.replies(CHANNEL, root) == ["edited reply"] and caps.streaming
    other, other_root = make_sink(slack, caps=caps)
    await other.finalize(await other.post("streamed"), "streamed reply")
    assert slack.thread(CHANNEL, other_root)[0].streamed


async def test_streams_need_a_thread(slack: FakeSlack) -> None:
    sink, _ = make_sink(slack, thread=False)
    await sink.finalize(await sink.post("top level"), "top level reply")
    assert not slack.called("chat.startStream") and slack.replies(CHANNEL, None) == ["top level reply"]


async def test_a_stream_sends_only_the_new_text(slack: FakeSlack) -> None:
    sink, root = make_sink(slack)
    handle = await sink.post("Hello")
    await sink.edit(handle, "Hello")
    await sink.edit(handle, "Hello, wor")
    await sink.finalize(handle, "Hello, world.")
    appended = [c.args["markdown_text"] for c in slack.called("chat.appendStream")]
    assert appended == [", wor"] and slack.called("chat.stopStream")[0].args["markdown_text"] == "ld."
    assert slack.replies(CHANNEL, root) == ["Hello, world."]


async def test_the_working_indicator_never_breaks_a_reply(slack: FakeSlack) -> None:
    sink, root = make_sink(slack)
    slack.fail_next("reactions.add", "missing_scope")
    await sink.typing()  # status not allowed, reaction refused: silently nothing
    await sink.typing()  # tried again: now the reaction works
    assert slack.reactions[(CHANNEL, root)] == {"hourglass_flowing_sand"}
    await sink.typing()  # shown once
    assert len(slack.called("reactions.add")) == 2
    await sink.finalize(None, "done")
    assert slack.reactions[(CHANNEL, root)] == set()


async def test_approvals_are_posted_then_updated_in_place(slack: FakeSlack) -> None:
    sink, root = make_sink(slack)
    request = bash_approval("r1", root, "rm -rf build")
    await sink.show_approval(request)
    [prompt] = slack.approvals(CHANNEL, root)
    assert {b["value"] for b in prompt.buttons()} == {"r1"}
    request.decision, request.decided_by, request.reason = Decision.DENY, "U1", "timed out"
    await sink.show_approval(request)
    assert slack.approvals(CHANNEL, root) == [prompt] and not prompt.buttons()
    assert "Denied by <@U1> (timed out)" in prompt.rendered() and "rm -rf build" in prompt.rendered()


async def test_approval_prompts_escape_the_tool_input(slack: FakeSlack) -> None:
    sink, root = make_sink(slack)
    command = "curl <https://evil.example|ls> && echo <!channel> " + "x" * 5000
    request = bash_approval("r3", root, command, input={"command": command})
    await sink.show_approval(request)
    [prompt] = slack.approvals(CHANNEL, root)
    section = prompt.blocks[0]["text"]["text"]
    # shown as typed, but it can't ping the channel or pose as a link labelled "ls"
    assert "```curl &lt;https://evil.example|ls&gt; &amp;&amp; echo &lt;!channel&gt; xxx" in section
    assert "<!channel>" not in section and "<https://" not in section and "<@U1>" in section
    assert len(section) <= 3000 and section.endswith("x…```")  # clipped to a section block
    assert "<!channel>" not in prompt.text and "&lt;!channel&gt;" in prompt.text  # the notification text too
    request.decision, request.decided_by = Decision.ALLOW_ONCE, "U1"
    await sink.show_approval(request)
    decided = prompt.blocks[0]["text"]["text"]
    assert "&lt;!channel&gt;" in decided and "<!channel>" not in decided and "<!channel>" not in prompt.text


@pytest.mark.parametrize("streaming", [True, False])
async def test_after_an_approval_prompt_the_reply_continues_below_it(slack: FakeSlack, streaming: bool) -> None:
    sink, root = make_sink(slack, streaming=streaming)
    request = bash_approval("r2", root, "ls")
    handle = await sink.post("Let me look.")
    await sink.show_approval(request)
    await sink.show_approval(request)  # a retried call shows it once
    await sink.edit(handle, "Let me look.\n\n")  # only a separator yet: nothing new to show
    await sink.edit(handle, "Let me look.\n\nFound 3")
    await sink.finalize(handle, "Let me look.\n\nFound 3 files.")
    texts = [m.rendered() for m in slack.thread(CHANNEL, root)]
    assert texts[0] == "Let me look." and "Approval needed" in texts[1] and texts[2] == "Found 3 files."
    assert len(texts) == 3 and not any(m.streaming for m in slack.thread(CHANNEL, root))


async def test_send_file_uses_the_v2_upload_flow(slack: FakeSlack, tmp_path: Path) -> None:
    sink, root = make_sink(slack)
    path = tmp_path / "chart.png"
    path.write_bytes(b"\x89PNG fake")
    await sink.send_file(path)
    [upload] = slack.files_in(CHANNEL, root)
    assert upload["data"] == b"\x89PNG fake" and upload["title"] == "chart.png"
    assert [c.method for c in slack.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]


async def test_the_file_fetcher_guards_the_token_and_the_size(slack: FakeSlack) -> None:
    fetcher = FileFetcher(BOT_TOKEN, extra_hosts={"127.0.0.1"})
    try:
        ok = slack.host_file("a.txt", b"abc", "text/plain")
        assert await fetcher.fetch(SlackFile("F1", "a.txt", "text/plain", None, ok), 100) == b"abc"
        big = slack.host_file("big.bin", b"x" * 500)
        with pytest.raises(FileRejected, match="larger than 100 bytes"):  # size unknown up front
            await fetcher.fetch(SlackFile("F2", "big.bin", None, None, big), 100)
        with pytest.raises(FileRejected, match="not hosted by Slack"):
            await fetcher.fetch(SlackFile("F3", "x", None, 1, "https://evil.example.com/x"), 100)
        with pytest.raises(FileRejected, match="tombstone"):
            await fetcher.fetch(SlackFile("F4", "gone.txt", None, 1, ok, mode="tombstone"), 100)
        with pytest.raises(FileRejected, match="HTTP 404"):
            await fetcher.fetch(SlackFile("F5", "missing", None, 1, f"{slack.url}/files-pri/nope"), 100)
        stranger = FileFetcher("xoxb-wrong", extra_hosts={"127.0.0.1"})
        with pytest.raises(FileRejected, match="sign-in page"):
            await stranger.fetch(SlackFile("F6", "a.txt", "text/plain", 3, ok), 100)
        await stranger.close()
        assert fetcher.trusted("https://files.slack.com/files-pri/T1-F1/a.txt")
        assert not fetcher.trusted("http://files.slack.com/x") and not fetcher.trusted("https://slack.com.evil.io/x")
        assert [d["authorized"] for d in slack.downloads] == [True, True, True, False]
    finally:
        await fetcher.close()
