# chat.*Stream is called directly, not via slack-sdk's chat_stream() helper (which buffers on its own):
# each call's 429 / expired stream must be seen so the core knows exactly what Slack shows.
"""The Slack reply sink: native streaming in threads, ``chat.update`` edits elsewhere.

In a thread a reply is one streamed message: ``post`` -> ``chat.startStream``,
``edit`` -> ``chat.appendStream`` with only the new suffix (the core's reply text
only grows), ``finalize`` -> ``chat.stopStream``. Where streaming is not
available (top-level DMs, a workspace or token without it, ``streaming: false``)
or a stream fails, the sink falls back to ``chat.postMessage`` + ``chat.update``
(and, when the workspace lacks streaming, remembers that for every later reply
of the bot: :class:`Capabilities`).

An approval prompt or a file ends the message being written; the reply goes on
in a new message below it, so a thread always reads top to bottom.

Text is standard Markdown (``markdown_text``); with ``text_format="mrkdwn"`` the
non-streamed messages carry Slack mrkdwn in ``text`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core import ApprovalRequest, MessageGone, SinkLimits
from core.sink import TargetedSink

from . import approvals
from .errors import (
    NETWORK_ERRORS,
    STREAM_ENDED,
    STREAM_UNAVAILABLE,
    STREAM_UNSUPPORTED,
    error_code,
    to_sink_error,
)
from .formatting import MARKDOWN_LIMIT, to_mrkdwn
from .status import Capabilities, WorkingIndicator

log = logging.getLogger(__name__)

TextFormat = Literal["markdown", "mrkdwn"]


@dataclass(frozen=True)
class SlackTarget:
    """Where a reply goes, and to whom."""

    channel: str
    thread_ts: str | None = None  # reply in this thread (None: top level)
    user_id: str | None = None  # the person answered (stream recipient)
    team_id: str | None = None
    message_ts: str | None = None  # the message answered (gets the working reaction)


@dataclass
class SlackMessage:
    """A sink handle: one message of the reply, as the core sees it.

    After an approval prompt the reply continues *below* the prompt: the handle
    moves on to a new Slack message (``ts``) that shows ``shown[base:]``.
    """

    ts: str
    streaming: bool  # an open chat.*Stream message
    shown: str = ""  # the reply text delivered so far (Markdown)
    base: int = 0  # where the current Slack message starts in ``shown``
    moved: bool = False  # the next text goes into a new message (after an approval prompt)


@dataclass(frozen=True)
class SinkOptions:
    streaming: bool = True
    text_format: TextFormat = "markdown"
    edit_interval: float = 1.0
    typing_interval: float = 10.0
    max_len: int = MARKDOWN_LIMIT
    working_reaction: str | None = "hourglass_flowing_sand"
    working_status: str = "is working…"


class _StreamUnavailable(Exception):
    """Streaming can't be used for this conversation / workspace."""


class _StreamEnded(Exception):
    """The stream of this message is over (expired); edit it instead."""


@dataclass(eq=False)
class SlackSink(TargetedSink):
    client: AsyncWebClient
    target: SlackTarget
    options: SinkOptions = field(default_factory=SinkOptions)
    caps: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        measure: Callable[[str], int] = len
        if self.options.text_format == "mrkdwn":
            measure = _mrkdwn_measure
        self.limits = SinkLimits(
            max_len=min(self.options.max_len, MARKDOWN_LIMIT),
            min_edit_interval=self.options.edit_interval,
            typing_interval=self.options.typing_interval,
            measure=measure,
        )
        self.working = WorkingIndicator(
            self.client,
            channel=self.target.channel,
            thread_ts=self.target.thread_ts,
            message_ts=self.target.message_ts,
            caps=self.caps,
            reaction=self.options.working_reaction,
            status_text=self.options.working_status,
        )
        self._approval_ts: dict[str, str] = {}
        self._stream_refused = False
        self._open: SlackMessage | None = None  # the reply message being written

    # -- the contract ----------------------------------------------------------
    async def post(self, text: str) -> SlackMessage:
        handle = await self._start(text)
        self._open = handle
        return handle

    async def edit(self, handle: SlackMessage, text: str) -> None:
        if text == handle.shown:
            return
        if handle.moved and text.startswith(handle.shown):
            await self._continue_below(handle, text)
            return
        if handle.streaming:
            if text.startswith(handle.shown):
                try:
                    await self._call(
                        "chat.appendStream",
                        self.client.chat_appendStream,
                        channel=self.target.channel,
                        ts=handle.ts,
                        markdown_text=text[len(handle.shown) :],
                    )
                    handle.shown = text
                    return
                except (_StreamUnavailable, _StreamEnded) as exc:
                    log.info("stream %s ended early (%s); continuing with edits", handle.ts, exc)
                    handle.streaming = False
            else:  # a stream only grows; should not happen (the core appends only)
                await self._close_stream(handle)
        await self._update(handle, text)

    async def finalize(self, handle: SlackMessage | None, text: str) -> None:
        if handle is None:
            await self._call("chat.postMessage", self.client.chat_postMessage, **self._new_message(text))
        elif handle.moved and text.startswith(handle.shown):
            rest = text[len(handle.shown) :].lstrip("\n")
            if rest.strip():
                await self._call("chat.postMessage", self.client.chat_postMessage, **self._new_message(rest))
            handle.shown, handle.moved = text, False
        elif handle.streaming:
            if text.startswith(handle.shown):
                try:
                    await self._stop(handle, text[len(handle.shown) :])
                    handle.shown = text
                except (_StreamUnavailable, _StreamEnded):
                    handle.streaming = False
                    await self._update(handle, text)
            else:
                await self._close_stream(handle)
                await self._update(handle, text)
        elif text != handle.shown:
            await self._update(handle, text)
        if handle is self._open:
            self._open = None
        await self.working.clear()

    async def typing(self) -> None:
        await self.working.show()

    async def show_approval(self, request: ApprovalRequest) -> None:
        if request.pending:
            if request.id in self._approval_ts:
                return  # already shown (a retried call)
            await self._move_below()
            response = await self._call(
                "chat.postMessage",
                self.client.chat_postMessage,
                channel=self.target.channel,
                thread_ts=self.target.thread_ts,
                text=approvals.fallback_text(request),
                blocks=approvals.prompt_blocks(request),
            )
            self._approval_ts[request.id] = str(response["ts"])
            return
        fields = {"text": approvals.fallback_text(request), "blocks": approvals.decided_blocks(request)}
        ts = self._approval_ts.pop(request.id, None)
        if ts is not None:
            try:
                await self._call("chat.update", self.client.chat_update, channel=self.target.channel, ts=ts, **fields)
                return
            except MessageGone:
                log.info("approval prompt %s is gone; posting the decision anew", ts)
        await self._call(
            "chat.postMessage",
            self.client.chat_postMessage,
            channel=self.target.channel,
            thread_ts=self.target.thread_ts,
            **fields,
        )

    async def send_file(self, path: Path, caption: str = "") -> None:
        data = await asyncio.to_thread(path.read_bytes)
        await self._move_below()
        await self._call(
            "files.upload",
            self.client.files_upload_v2,
            channel=self.target.channel,
            thread_ts=self.target.thread_ts,
            file=data,
            filename=path.name,
            title=path.name,
            initial_comment=to_mrkdwn(caption) if caption else None,
        )

    # -- helpers ---------------------------------------------------------------
    async def _start(self, text: str) -> SlackMessage:
        """A new reply message: a stream where possible, else a plain message."""
        if self._may_stream():
            try:
                response = await self._call(
                    "chat.startStream",
                    self.client.chat_startStream,
                    channel=self.target.channel,
                    thread_ts=self.target.thread_ts,
                    markdown_text=text,
                    recipient_user_id=self.target.user_id,
                    recipient_team_id=self.target.team_id,
                )
                return SlackMessage(ts=str(response["ts"]), streaming=True, shown=text)
            except (_StreamUnavailable, _StreamEnded) as exc:
                self._stream_refused = True
                if str(exc) in STREAM_UNSUPPORTED:
                    log.info("Slack streaming is not available (%s); replying with message edits from now on", exc)
                    self.caps.streaming = False
                else:
                    log.info("Slack refused a stream here (%s); this reply uses message edits", exc)
        response = await self._call("chat.postMessage", self.client.chat_postMessage, **self._new_message(text))
        return SlackMessage(ts=str(response["ts"]), streaming=False, shown=text)

    async def _move_below(self) -> None:
        """Before a prompt or a file: end the message being written; the reply goes on below it."""
        handle = self._open
        if handle is None or handle.moved:
            return
        if handle.streaming:
            await self._close_stream(handle)
        handle.moved = True

    async def _continue_below(self, handle: SlackMessage, text: str) -> None:
        rest = text[len(handle.shown) :]
        body = rest.lstrip("\n")
        if not body.strip():
            return  # only the separator so far: wait for words
        fresh = await self._start(body)
        handle.ts, handle.streaming = fresh.ts, fresh.streaming
        handle.base = len(text) - len(body)
        handle.shown, handle.moved = text, False

    def _may_stream(self) -> bool:
        return (
            self.options.streaming
            and self.caps.streaming
            and not self._stream_refused
            and self.target.thread_ts is not None
        )

    def _body(self, text: str) -> dict[str, Any]:
        if self.options.text_format == "mrkdwn":
            return {"text": to_mrkdwn(text)}
        return {"markdown_text": text}

    def _new_message(self, text: str) -> dict[str, Any]:
        return {"channel": self.target.channel, "thread_ts": self.target.thread_ts, **self._body(text)}

    async def _update(self, handle: SlackMessage, text: str) -> None:
        body = text[handle.base :] if text.startswith(handle.shown[: handle.base]) else text
        await self._call(
            "chat.update", self.client.chat_update, channel=self.target.channel, ts=handle.ts, **self._body(body)
        )
        handle.shown = text

    async def _stop(self, handle: SlackMessage, suffix: str | None) -> None:
        await self._call(
            "chat.stopStream",
            self.client.chat_stopStream,
            channel=self.target.channel,
            ts=handle.ts,
            markdown_text=suffix or None,
        )
        handle.streaming = False

    async def _close_stream(self, handle: SlackMessage) -> None:
        """End a stream whose text must be replaced (then edited with chat.update)."""
        try:
            await self._stop(handle, None)
        except (_StreamUnavailable, _StreamEnded):
            handle.streaming = False

    @staticmethod
    async def _call(what: str, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """One Web API call; failures become core sink errors (or stream signals)."""
        args = {k: v for k, v in kwargs.items() if v is not None}
        try:
            return await method(**args)
        except SlackApiError as exc:
            code = error_code(exc)
            if what.startswith("chat.") and what.endswith("Stream"):
                if code in STREAM_UNAVAILABLE:
                    raise _StreamUnavailable(code) from exc
                if code in STREAM_ENDED:
                    raise _StreamEnded(code) from exc
            raise to_sink_error(exc, what) from exc
        except NETWORK_ERRORS as exc:
            raise to_sink_error(exc, what) from exc


def _mrkdwn_measure(text: str) -> int:
    return max(len(text), len(to_mrkdwn(text)))


__all__ = ["SinkOptions", "SlackMessage", "SlackSink", "SlackTarget"]
