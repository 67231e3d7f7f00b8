"""The "working…" indicator of one reply.

In a thread it first tries ``assistant.threads.setStatus`` (the native status
line of Slack's agent threads); where that isn't available it reacts to the
user's message with an emoji (``reactions.add``), removed again when the reply
is finished. Failures only ever cost the indicator, never the reply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .errors import NETWORK_ERRORS, error_code, is_rate_limited

log = logging.getLogger(__name__)


@dataclass
class Capabilities:
    """What this workspace turned out to support; shared by every sink of one bot."""

    streaming: bool = True
    # assistant.threads.setStatus, by conversation kind ("dm" / "channel"); None = not tried yet
    assistant_status: dict[str, bool] = field(default_factory=dict)


class WorkingIndicator:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str | None,
        message_ts: str | None,
        caps: Capabilities,
        reaction: str | None,
        status_text: str,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.message_ts = message_ts
        self.caps = caps
        self.reaction = reaction
        self.status_text = status_text
        self.shown: Literal["status", "reaction"] | None = None

    @property
    def _kind(self) -> str:
        return "dm" if self.channel.startswith("D") else "channel"

    async def show(self) -> None:
        if self.shown is not None:
            return
        if self.thread_ts and self.status_text and self.caps.assistant_status.get(self._kind, True):
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.thread_ts, status=self.status_text
                )
                self.caps.assistant_status[self._kind] = True
                self.shown = "status"
                return
            except SlackApiError as exc:
                if is_rate_limited(exc):
                    return
                log.debug("assistant status unavailable here (%s); using a reaction", error_code(exc))
                if not self.caps.assistant_status.get(self._kind):
                    self.caps.assistant_status[self._kind] = False
            except NETWORK_ERRORS as exc:
                log.debug("assistant status failed: %r", exc)
                return
        if self.reaction and self.message_ts:
            try:
                await self.client.reactions_add(channel=self.channel, timestamp=self.message_ts, name=self.reaction)
                self.shown = "reaction"
            except SlackApiError as exc:
                if error_code(exc) == "already_reacted":
                    self.shown = "reaction"
                else:
                    log.debug("working reaction failed: %s", error_code(exc) or exc)
            except NETWORK_ERRORS as exc:
                log.debug("working reaction failed: %r", exc)

    async def clear(self) -> None:
        shown, self.shown = self.shown, None
        try:
            if shown == "status" and self.thread_ts:
                await self.client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.thread_ts, status=""
                )
            elif shown == "reaction" and self.reaction and self.message_ts:
                await self.client.reactions_remove(channel=self.channel, timestamp=self.message_ts, name=self.reaction)
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.debug("clearing the working indicator failed: %r", exc)
