"""Feishu / Lark adapter on lark-oapi (Python): one bot for Feishu (China) and Lark (international).

* :class:`FeishuAdapter` — receiving over the long connection (:mod:`.long_connection`, the default)
  or HTTP callbacks (:mod:`.callback`), messages and approval buttons -> the core dispatcher.
* :class:`FeishuSink` — replies as CardKit streaming cards, with fallbacks (:mod:`.sink`, :mod:`.cards`).
* :mod:`.events` — message events read into :class:`FeishuPlace` (the bot's ``route`` picks the
  conversation); :mod:`.approvals` — button cards; :mod:`.files` — message resources;
  :mod:`.api` — lark-oapi REST calls off the event loop; :mod:`.errors` — codes -> core errors.
"""

from .adapter import FeishuAdapter
from .api import FeishuApi
from .callback import CallbackServer, CallbackVerifier, Refused
from .config import DOMAINS, FEISHU_DOMAIN, LARK_DOMAIN, FeishuConfig
from .events import PLATFORM, FeishuInbound, FeishuPlace, FeishuTarget, Resource, Router, read_message
from .long_connection import LongConnection, PayloadHandler
from .sink import Capabilities, CardHandle, ChatPacer, FeishuSink, SinkOptions

__all__ = [
    "DOMAINS",
    "FEISHU_DOMAIN",
    "LARK_DOMAIN",
    "PLATFORM",
    "CallbackServer",
    "CallbackVerifier",
    "Capabilities",
    "CardHandle",
    "ChatPacer",
    "FeishuAdapter",
    "FeishuApi",
    "FeishuConfig",
    "FeishuInbound",
    "FeishuPlace",
    "FeishuSink",
    "FeishuTarget",
    "LongConnection",
    "PayloadHandler",
    "Refused",
    "Resource",
    "Router",
    "SinkOptions",
    "read_message",
]
