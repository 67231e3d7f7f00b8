"""Tool approvals as inline keyboards, pressed through real callback queries."""

from __future__ import annotations

from adapters.telegram.approvals import EXPIRED_TEXT, FORBIDDEN_TEXT, parse_press
from core import ConversationKey, Decision
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall

from .conftest import BotFactory
from .fake_bot_api import ChatMessage, FakeBotAPI
from .people import ADA, ADA_DM, BOB, MENTION, TEAM


def button(prompt: ChatMessage, code: str) -> str:
    return next(b["callback_data"] for b in prompt.buttons() if b["callback_data"].endswith(f":{code}"))


async def prompt_in(api: FakeBotAPI, chat_id: int) -> ChatMessage:
    [prompt] = await api.wait_for(
        lambda: [m for m in api.bot_messages(chat_id) if m.buttons()], what="approval buttons"
    )
    return prompt


async def test_an_approval_pressed_by_another_user_is_refused(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(ToolCall("Bash", {"command": "echo ran > refused.txt", "description": "write a file"}))
    bot = await make_bot()
    bot_api.say(TEAM, ADA, f"{MENTION} please write the file")
    prompt = await prompt_in(bot_api, TEAM["id"])
    assert "Bash" in prompt.text and "echo ran > refused.txt" in prompt.text
    labels = [b["text"] for b in prompt.buttons()]
    assert any("Allow once" in t for t in labels) and any("session" in t for t in labels)
    assert any("Deny" in t for t in labels)
    assert all(len(b["callback_data"].encode()) <= 64 for b in prompt.buttons())

    once, deny = button(prompt, "o"), button(prompt, "d")
    by_bob = bot_api.press(BOB, prompt, once)
    [answer] = await bot_api.wait_for(lambda: bot_api.answers_for(by_bob), what="Bob's answer")
    assert answer["show_alert"] is True and answer["text"] == FORBIDDEN_TEXT
    assert prompt.buttons()  # still waiting for Ada
    press = parse_press(once)
    assert press is not None and bot.agent.approvals.get(press.request_id).pending

    by_ada = bot_api.press(ADA, prompt, deny)
    await bot_api.wait_for(lambda: bot_api.answers_for(by_ada), what="Ada's answer")
    await bot_api.wait_for(lambda: "Denied by Ada" in prompt.text and not prompt.buttons(), what="the decision shown")
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(TEAM["id"]) if "tool result:" in t], what="the reply")
    root = bot.agent.workspaces.root(ConversationKey("telegram", f"chat{TEAM['id']}"))
    assert not (root / "refused.txt").exists()

    late = bot_api.press(ADA, prompt, once)  # a stale button (e.g. another client)
    [answer] = await bot_api.wait_for(lambda: bot_api.answers_for(late), what="the late answer")
    assert answer["show_alert"] is True and answer["text"] == EXPIRED_TEXT
    assert len(bot_api.callback_answers) == 3  # every press was answered


async def test_the_requester_allows_once_and_the_tool_runs(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(ToolCall("Bash", {"command": "echo ran > allowed.txt", "description": "write a file"}))
    bot = await make_bot()
    bot_api.say(ADA_DM, ADA, "please write the file")
    prompt = await prompt_in(bot_api, 42)
    pressed = bot_api.press(ADA, prompt, button(prompt, "o"))
    [answer] = await bot_api.wait_for(lambda: bot_api.answers_for(pressed))
    assert answer.get("text") == Decision.ALLOW_ONCE.label and not answer.get("show_alert")
    await bot_api.wait_for(lambda: "Allowed once by Ada" in prompt.text and not prompt.buttons())
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(42) if "tool result:" in t], what="the reply")
    assert (bot.agent.workspaces.root(ConversationKey("telegram", "42")) / "allowed.txt").read_text() == "ran\n"


async def test_an_admin_may_answer_for_someone_else(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(ToolCall("Bash", {"command": "echo ran > by_admin.txt", "description": "write a file"}))
    bot = await make_bot(access={"allow_all": False, "allowlist": ["telegram:42"], "admins": ["telegram:43"]})
    bot_api.say(TEAM, ADA, f"{MENTION} please write the file")
    prompt = await prompt_in(bot_api, TEAM["id"])
    pressed = bot_api.press(BOB, prompt, button(prompt, "s"))
    [answer] = await bot_api.wait_for(lambda: bot_api.answers_for(pressed))
    assert not answer.get("show_alert")
    await bot_api.wait_for(lambda: "Allowed for this session by Bob" in prompt.text)
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(TEAM["id"]) if "tool result:" in t], what="the reply")
    root = bot.agent.workspaces.root(ConversationKey("telegram", f"chat{TEAM['id']}"))
    assert (root / "by_admin.txt").read_text() == "ran\n"  # the tool ran on the admin's say-so


async def test_unknown_button_data_is_answered_and_ignored(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot()
    bot_api.say(ADA_DM, ADA, "hello")
    [reply] = await bot_api.wait_for(lambda: bot_api.bot_messages(42))
    presses = [bot_api.press(ADA, reply, data) for data in ("something-else", "ap:::", "ap:nope:x", "ap:gone:o")]
    await bot_api.wait_for(lambda: all(bot_api.answers_for(p) for p in presses), what="every press answered")
    assert bot_api.answers_for(presses[-1])[0]["text"] == EXPIRED_TEXT
