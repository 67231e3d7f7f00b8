"""The console bot on a real terminal (a pty): editing, history, Markdown, Ctrl-C, approvals, logs."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.console.conftest import CTRL_C, CTRL_D, LEFT, UP, StartTerminal
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang, Text, ToolCall


def _asked(fake_api: FakeAnthropicAPI, text: str) -> int:
    """How many requests reached the model with ``text`` as the user's last message."""
    return sum(1 for r in fake_api.requests if r.last_user_text() == text)


async def test_arrow_keys_edit_the_line_and_up_recalls_it(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    term = await start_terminal()
    term.type("hello wrld" + LEFT * 3 + "o\r")
    await term.wait_for("echo: hello world")
    assert fake_api.requests[-1].last_user_text() == "hello world"  # the edited text, no escape codes
    await term.wait_for(lambda: term.prompt_after("echo: hello world"), what="the prompt after the reply")
    mark = term.mark()
    term.type(UP + "\r")
    await term.wait_for(lambda: term.prompt_after("echo: hello world", mark), what="the recalled line answered")
    assert _asked(fake_api, "hello world") == 2
    assert (tmp_path / ".ccbridge_history").read_text().count("+hello world") >= 1
    term.type(CTRL_D)
    assert await term.exit_code() == 0


async def test_replies_are_rendered_as_markdown_then_the_prompt(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["format this"] = [Text("Some **bold** and `code`:\n\n- first item\n- second item\n", chunks=6)]
    term = await start_terminal()
    term.type("format this\r")
    await term.wait_for(lambda: term.prompt_after("second item"), what="the reply, then the prompt")
    final = term.text().rsplit("Some ", 1)[1]  # the last render: the reply as it stays on screen
    assert final.startswith("bold and code:") and "**" not in final and "`" not in final
    assert "• first item" in final and "• second item" in final


async def test_ctrl_c_stops_the_reply_and_the_next_message_works_at_once(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["tell me a long story"] = [Hang("Once upon a time", seconds=120)]
    term = await start_terminal()
    term.type("tell me a long story\r")
    await term.wait_for("Once upon a time")
    assert not term.shows("Stopped")  # still running: the text was streamed live
    warm = term.claude_processes()
    assert warm
    term.type(CTRL_C)
    await term.wait_for("⏹ Stopped.")
    await term.wait_for(lambda: term.prompt_after("⏹ Stopped."), what="the prompt after the stopped reply")
    term.type("and now?\r")
    await term.wait_for("echo: and now?")
    # Ctrl-C was a key, not a signal: the warm Claude Code process kept its session and answered.
    assert term.claude_processes() == warm
    assert term.proc.returncode is None
    term.type(CTRL_D)
    assert await term.exit_code() == 0


async def test_a_second_ctrl_c_during_a_reply_quits(start_terminal: StartTerminal, fake_api: FakeAnthropicAPI) -> None:
    fake_api.rules["tell me a long story"] = [Hang("Once upon a time", seconds=120)]
    term = await start_terminal()
    term.type("tell me a long story\r")
    await term.wait_for("Once upon a time")
    term.type(CTRL_C)
    await term.wait_for("Ctrl-C again to quit")
    term.type(CTRL_C)
    assert await term.exit_code() == 0


async def test_ctrl_d_during_a_reply_quits_once_it_is_answered(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["take your time"] = [Hang("Thinking it over", seconds=5), Text(" and done.")]
    term = await start_terminal()
    term.type("take your time\r")
    await term.wait_for("Thinking it over")
    term.type(CTRL_D)  # typed while the reply runs: not lost, and the reply is not cut short
    await term.wait_for("Quitting once this reply is done")
    assert await term.exit_code() == 0
    assert term.shows("and done.")
    assert not term.shows("Stopped")


async def test_ctrl_c_or_a_sigint_at_the_prompt_quits(start_terminal: StartTerminal) -> None:
    term = await start_terminal()
    term.type(CTRL_C)
    assert await term.exit_code() == 0
    term = await start_terminal()
    term.proc.send_signal(signal.SIGINT)  # nothing typed: the process must not wait for a line
    assert await term.exit_code() == 0


async def test_text_typed_during_a_reply_is_sent_with_enter(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["tell me a long story"] = [Hang("Once upon a time", seconds=120)]
    term = await start_terminal()
    term.type("tell me a long story\r")
    await term.wait_for("Once upon a time")
    term.type("/stop\r")  # a command runs at once, while the reply is still running
    await term.wait_for("⏹ Stopped.")
    await term.wait_for(lambda: term.prompt_after("⏹ Stopped."), what="the prompt")
    term.type("after that\r")
    await term.wait_for("echo: after that")


async def test_approvals_are_answered_at_the_prompt(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    fake_api.rules["make it"] = [ToolCall("Bash", {"command": "echo made > made.txt"})]
    term = await start_terminal()
    term.type("make it\r")
    await term.wait_for("Allow? [o]nce / for this [s]ession / [d]eny:")
    assert term.shows("Claude wants to use Bash: echo made > made.txt")
    term.type("maybe\r")
    await term.wait_for("Please answer o (once), s (session) or d (deny).")
    term.type("o\r")
    await term.wait_for("Allowed once")
    await term.wait_for(lambda: term.prompt_after("tool result"), what="the reply after the approval")
    made = list((tmp_path / "ws" / "console").glob("*/made.txt"))
    assert made and made[0].read_text() == "made\n"


async def test_log_lines_stay_off_the_terminal(
    start_terminal: StartTerminal, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    term = await start_terminal(log_level="INFO")  # stderr is the terminal too, as for a person
    term.type("hi there\r")
    await term.wait_for(lambda: term.prompt_after("echo: hi there"), what="the reply")
    term.type(CTRL_D)
    assert await term.exit_code() == 0
    assert " INFO " not in term.text() and "starting console" not in term.text()

    log_file = tmp_path / "logs" / "ccbridge.log"
    term = await start_terminal(log_level="INFO", log_file=str(log_file))
    term.type("hi again\r")
    await term.wait_for(lambda: term.prompt_after("echo: hi again"), what="the reply")
    term.type(CTRL_D)
    assert await term.exit_code() == 0
    assert " INFO " not in term.text()
    assert "INFO ccbridge: starting console (console, user" in log_file.read_text()
