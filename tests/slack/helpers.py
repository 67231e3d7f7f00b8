"""Building Slack events and reading Slack's state back, for the Slack tests."""

from __future__ import annotations

import re
from typing import Any

from core import ConversationKey
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall

from .conftest import Running
from .fake_slack import BOT_USER, TEAM, FakeSlack

CHANNEL = "C0GENERAL"
DM = "D0ALICE"
BASH_ALLOWED = {"agent": {"allowed_tools": ["Bash"]}}  # gates (below) run without an approval prompt


def mention(
    fake: FakeSlack, text: str, *, user: str = "U1", channel: str = CHANNEL, thread_ts: str | None = None
) -> dict[str, Any]:
    msg = fake.user_message(channel, user, f"<@{BOT_USER}> {text}", thread_ts=thread_ts)
    event = {
        "type": "app_mention",
        "user": user,
        "text": msg.text,
        "ts": msg.ts,
        "channel": channel,
        "event_ts": msg.ts,
        "team": TEAM,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(
    fake: FakeSlack,
    text: str,
    *,
    user: str = "U1",
    channel: str = CHANNEL,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    **extra: Any,
) -> dict[str, Any]:
    msg = fake.user_message(channel, user, text, thread_ts=thread_ts)
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": msg.ts,
        "channel": channel,
        "event_ts": msg.ts,
        "channel_type": channel_type,
        "team": TEAM,
        **extra,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def dm(fake: FakeSlack, text: str, *, user: str = "U1", channel: str = DM, **extra: Any) -> dict[str, Any]:
    return message(fake, text, user=user, channel=channel, channel_type="im", **extra)


def slash(
    fake: FakeSlack, text: str, channel: str, *, user: str = "U1", channel_name: str = "directmessage"
) -> dict[str, str]:
    return {
        "token": "legacy",
        "team_id": TEAM,
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user.lower(),
        "command": "/claude",
        "text": text,
        "response_url": f"{fake.url}/respond/1",
        "trigger_id": "t1",
        "api_app_id": "AFAKE",
    }


def _key(owner: str, thread: str | None = None) -> ConversationKey:
    return ConversationKey("slack", owner, thread)


def asked(fake_api: FakeAnthropicAPI) -> list[str]:
    """What people asked the model, oldest first (without the "[speaker]" prefix of shared chats)."""
    return [re.sub(r"^\[[^\]]*\] ", "", r.last_user_text()) for r in fake_api.requests]


class Gate:
    """A Bash call that waits until the test opens it: the turn provably stays mid-reply meanwhile.

    Each tool call adds a "🔧 Bash" line to the reply, so while a gate is closed that line must reach
    Slack as an update of the open message (a stream append, or an edit): no timing involved.
    """

    def __init__(self, bot: Running, key: ConversationKey, name: str) -> None:
        self.name = name
        self.path = bot.agent.workspaces.root(key) / name

    @property
    def call(self) -> ToolCall:
        command = f"while [ ! -s {self.path} ]; do sleep 0.05; done; cat {self.path}"
        return ToolCall("Bash", {"command": command, "description": f"wait for {self.name}"})

    def open(self) -> None:
        staged = self.path.with_name(self.name + ".tmp")
        staged.write_text(f"released {self.name}")
        staged.replace(self.path)


def assert_gated_reply(text: str) -> None:
    """``text`` is two gated tool lines, then the final answer (nothing lost, nothing twice)."""
    assert text.count("🔧 Bash") == 2 and text.endswith("tool result: released go2"), text


def finished(fake: FakeSlack, channel: str, thread_ts: str | None, needle: str) -> bool:
    """A reply containing ``needle`` is complete (no open stream) in that thread."""
    msgs = [m for m in fake.thread(channel, thread_ts) if not m.is_approval]
    return any(needle in m.rendered() for m in msgs) and not any(m.streaming for m in msgs)


def button_payload(prompt: Any, action_id: str, user: str) -> dict[str, Any]:
    button = next(b for b in prompt.buttons() if b["action_id"] == action_id)
    return {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "AFAKE",
        "trigger_id": "t1",
        "container": {
            "type": "message",
            "message_ts": prompt.ts,
            "channel_id": prompt.channel,
            "is_ephemeral": False,
            "thread_ts": prompt.thread_ts,
        },
        "channel": {"id": prompt.channel},
        "message": {"type": "message", "ts": prompt.ts, "thread_ts": prompt.thread_ts, "text": prompt.text},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "ccbridge_approval_buttons",
                "value": button["value"],
                "action_ts": "1",
            }
        ],
    }
