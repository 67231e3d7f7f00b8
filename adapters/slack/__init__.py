"""Slack adapter: bolt (async) + slack-sdk, Socket Mode or the HTTP Events API.

* :class:`SlackAdapter` — the bolt app (:mod:`.transport`: Socket Mode / HTTP; :mod:`.listeners`:
  events -> the core dispatcher, buttons, slash command).
* :class:`SlackSink` — replies: native streaming in threads, ``chat.update`` edits elsewhere.
* :mod:`.events` — events read into :class:`SlackPlace` (the bot's ``route`` picks the conversation);
  :mod:`.formatting` — Markdown / mrkdwn; :mod:`.payloads` — what a signed HTTP request must look like.
"""

from .adapter import SlackAdapter
from .config import SlackConfig
from .events import BotIdentity, Router, SlackInbound, SlackPlace, translate_message
from .formatting import to_mrkdwn
from .sink import SinkOptions, SlackMessage, SlackSink, SlackTarget
from .status import Capabilities

__all__ = [
    "BotIdentity",
    "Capabilities",
    "SinkOptions",
    "SlackAdapter",
    "SlackConfig",
    "Router",
    "SlackInbound",
    "SlackPlace",
    "SlackMessage",
    "SlackSink",
    "SlackTarget",
    "to_mrkdwn",
    "translate_message",
]
