"""Slack adapter: bolt (async) + slack-sdk, Socket Mode or the HTTP Events API.

* :class:`SlackBridge` — the bolt app: events -> the core dispatcher, buttons, slash command.
* :class:`SlackSink` — replies: native streaming in threads, ``chat.update`` edits elsewhere.
* :mod:`.events` — who is answered, in which conversation; :mod:`.formatting` — Markdown / mrkdwn.
"""

from .bridge import SlackBridge
from .config import SlackConfig
from .events import BotIdentity, SlackInbound, translate_message
from .formatting import to_mrkdwn
from .sink import SinkOptions, SlackMessage, SlackSink, SlackTarget
from .status import Capabilities

__all__ = [
    "BotIdentity", "Capabilities", "SinkOptions", "SlackBridge", "SlackConfig", "SlackInbound", "SlackMessage",
    "SlackSink", "SlackTarget", "to_mrkdwn", "translate_message",
]
