"""Who the bot answers, and in which conversation: Slack events -> SlackInbound."""

from __future__ import annotations

from typing import Any

from adapters.slack.events import BotIdentity, SlackInbound, strip_mentions, translate_message
from bots.slack import conversation_key
from core import ConversationKey
from core.commands import Command, parse_command

BOT = BotIdentity(user_id="UBOT", bot_id="BBOT", team_id="T1")


def read(ev: dict[str, Any], **kw: Any) -> SlackInbound | None:
    """An event as the Slack bot sees it: read by the adapter, routed by the bot's policy."""
    return translate_message(ev, BOT, conversation_key, **kw)


def event(**fields: Any) -> dict[str, Any]:
    base = {"type": "message", "user": "U1", "text": "hi", "ts": "10.1", "channel": "C1", "channel_type": "channel"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_a_dm_is_one_session_per_user_answered_at_the_top_level() -> None:
    inbound = read(event(channel="D1", channel_type="im"))
    assert inbound is not None
    assert inbound.key == ConversationKey("slack", "U1") and inbound.mentioned
    assert inbound.target.channel == "D1" and inbound.target.thread_ts is None
    assert inbound.target.message_ts == "10.1"


def test_dm_threads_and_replies_inside_a_dm_thread() -> None:
    assert read(event(channel="D1", channel_type="im"), dm_threads=True).target.thread_ts == "10.1"
    inbound = read(event(channel="D1", channel_type="im", thread_ts="9.0"))
    assert inbound.target.thread_ts == "9.0" and inbound.key == ConversationKey("slack", "U1")


def test_a_mention_opens_a_thread_session() -> None:
    inbound = read(event(type="app_mention", text="<@UBOT> do it", channel_type=None))
    assert inbound.key == ConversationKey("slack", "C1", "10.1")
    assert inbound.text == "do it" and inbound.mentioned
    assert inbound.target.thread_ts == "10.1" and inbound.target.user_id == "U1" and inbound.target.team_id == "T1"


def test_a_mention_inside_a_thread_joins_that_thread() -> None:
    inbound = read(event(type="app_mention", text="<@UBOT|ccb> more", thread_ts="5.0"))
    assert inbound.key == ConversationKey("slack", "C1", "5.0") and inbound.text == "more"


def test_thread_messages_without_a_mention_are_follow_ups() -> None:
    inbound = read(event(text="and then?", thread_ts="5.0"))
    assert inbound.key == ConversationKey("slack", "C1", "5.0") and not inbound.mentioned
    assert read(event(text="chatter")) is None  # top level, no mention


def test_a_plain_message_mentioning_the_bot_counts_as_a_mention() -> None:
    inbound = read(event(text="hey <@UBOT> look"))
    assert inbound.mentioned and inbound.key.thread == "10.1" and inbound.text == "hey   look"


def test_bots_edits_and_joins_are_ignored() -> None:
    for ignored in (
        event(bot_id="B2"),
        event(subtype="bot_message", user=None),
        event(user="UBOT"),
        event(subtype="message_changed"),
        event(subtype="channel_join"),
        event(channel="D1", channel_type="im", hidden=True),
        event(user=None),
        event(type="reaction_added"),
    ):
        assert read(ignored) is None


def test_file_shares_carry_their_files() -> None:
    files = [{"id": "F1", "name": "a.txt"}, "junk"]
    inbound = read(event(channel="D1", channel_type="im", subtype="file_share", files=files))
    assert inbound.files == [{"id": "F1", "name": "a.txt"}]


def test_bang_commands_become_core_commands() -> None:
    # typed with "!" (Slack's composer takes a leading "/"): core's commands read both
    assert parse_command("!new") == Command("new", "")
    assert parse_command("!status please") == Command("status", "please")
    assert parse_command("!important thing") is None
    assert strip_mentions("<@UBOT> /cwd src", "UBOT") == "/cwd src"


def test_message_text_reaches_claude_as_typed() -> None:
    inbound = read(event(channel_type="im", channel="D1", text="is a &lt; b &amp;&amp; <https://x.io|x.io>?"))
    assert inbound is not None and inbound.text == "is a < b && x.io?"
