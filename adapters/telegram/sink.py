"""The Telegram reply sink: streams a reply into one chat (or forum topic).

Private chats stream with native drafts (``sendMessageDraft``: an animated,
ephemeral preview) and finish with one ``sendMessage``. Groups, and private
chats when drafts are unavailable, post a message and edit it. Every text is
sent as plain text + entities (:mod:`.formatting`), so no prefix of a reply can
fail to parse. The streamer (``core.reply``) paces edits per message; a
:class:`ChatPacer` additionally spaces the bot's messages per chat, because
several replies (forum topics, a queued notice) can share one chat.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, EndPointNotFound, InvalidToken, TelegramError

from core import ApprovalRequest, CCBridgeError, MessageGone, SinkLimits
from core.pacing import ChatPacer as Pacer
from core.sink import TargetedSink

from . import approvals
from .errors import call, translate
from .formatting import MAX_TEXT, Rendered, render, render_caption, telegram_length

log = logging.getLogger(__name__)

DRAFT_REFRESH = 20.0  # seconds; Telegram shows a draft for about 30 s unless it is sent again


def telegram_limits(*, max_len: int = MAX_TEXT, edit_interval: float = 1.0, typing_interval: float = 4.0) -> SinkLimits:
    """Limits for a Telegram sink: length measured as Telegram counts it (rendered, UTF-16)."""
    return SinkLimits(
        max_len=max_len, min_edit_interval=edit_interval, typing_interval=typing_interval, measure=telegram_length
    )


class ChatPacer(Pacer[int]):
    """Spaces the bot's messages in each chat by ``interval`` seconds (Telegram: about one per second)."""


_NO_SUCH_METHOD = ("method not found", "unknown method", "method is not supported")


def draft_method_missing(exc: TelegramError) -> bool:
    """True when the server doesn't know ``sendMessageDraft`` at all (an unknown method is a 404,
    which PTB raises as ``InvalidToken``), as opposed to a draft refused in one chat."""
    if isinstance(exc, (InvalidToken, EndPointNotFound)):
        return True
    return isinstance(exc, BadRequest) and any(phrase in exc.message.lower() for phrase in _NO_SUCH_METHOD)


class DraftSupport:
    """Whether ``sendMessageDraft`` exists on this Bot API server; switched off when it turns out not to."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def disable(self, exc: TelegramError) -> None:
        if self.enabled:
            log.warning("message drafts are unavailable (%s); streaming by editing messages instead", exc)
        self.enabled = False


@dataclass(frozen=True)
class ChatTarget:
    """Where a reply goes."""

    chat_id: int
    private: bool = False
    thread_id: int | None = None  # forum topic
    reply_to: int | None = None  # the message being answered (groups)


@dataclass
class Handle:
    """One reply message: a draft (private chats) or a real message (edited in place)."""

    kind: Literal["draft", "message"]
    id: int
    shown: Rendered | None = None


@dataclass
class TelegramSink(TargetedSink):
    bot: Bot
    target: ChatTarget
    limits: SinkLimits = field(default_factory=telegram_limits)
    pacer: ChatPacer = field(default_factory=lambda: ChatPacer(1.0))
    drafts: DraftSupport = field(default_factory=DraftSupport)
    names: Mapping[str, str] = field(default_factory=dict)  # user id -> display name
    _approval_messages: dict[str, int] = field(default_factory=dict, init=False)
    _posted: bool = field(default=False, init=False)
    _live_draft: Handle | None = field(default=None, init=False)
    _drafts_refused: bool = field(default=False, init=False)  # this reply streams by post + edit
    _drafted_at: float = field(default=0.0, init=False)

    # -- streaming -------------------------------------------------------------
    async def post(self, text: str) -> Handle:
        shown = render(text)
        if self._drafting():
            handle = Handle("draft", self.drafts.next_id())
            if await self._draft(handle, shown):
                return handle
        message = await self._send(shown)
        return Handle("message", message.message_id, shown)

    async def edit(self, handle: Handle, text: str) -> None:
        shown = render(text)
        if shown == handle.shown:
            return
        if handle.kind == "draft":
            if self._drafting() and await self._draft(handle, shown):
                return
            # drafts stopped working mid-reply: continue in a real message
            message = await self._send(shown)
            handle.kind, handle.id, handle.shown = "message", message.message_id, shown
            return
        await self._edit(handle, shown)

    async def finalize(self, handle: Handle | None, text: str) -> None:
        shown = render(text)
        if handle is None or handle.kind == "draft":
            await self._send(shown)  # a draft is only a preview: the final text is a real message
            if handle is not None and handle is self._live_draft:
                self._live_draft = None
            return
        if shown != handle.shown:
            await self._edit(handle, shown)

    async def typing(self) -> None:
        if not self.target.private and self._posted:
            # In groups every request counts against ~20 per minute: once the reply is visible, its edits show progress.
            return
        draft = self._live_draft
        if draft is not None and draft.shown is not None and time.monotonic() - self._drafted_at > DRAFT_REFRESH:
            # a long tool run or an approval wait: keep the ephemeral preview on screen
            try:
                await self._draft(draft, draft.shown)
            except CCBridgeError as exc:
                log.debug("could not refresh the draft in %s: %s", self.target.chat_id, exc)
        try:
            await self.bot.send_chat_action(
                self.target.chat_id, ChatAction.TYPING, message_thread_id=self.target.thread_id
            )
        except TelegramError as exc:
            log.debug("typing indicator failed in %s: %s", self.target.chat_id, exc)

    # -- approvals and files -----------------------------------------------------
    async def show_approval(self, request: ApprovalRequest) -> None:
        if request.pending:
            message = await self._send(render(approvals.prompt_text(request, self.names)), approvals.keyboard(request))
            self._approval_messages[request.id] = message.message_id
            return
        shown = render(approvals.outcome_text(request, self.names))
        message_id = self._approval_messages.pop(request.id, None)
        if message_id is not None:
            try:
                await self._edit(Handle("message", message_id), shown)  # no reply_markup: the buttons go away
                return
            except MessageGone:
                pass
        await self._send(shown)

    async def send_file(self, path: Path, caption: str = "") -> None:
        data = await asyncio.to_thread(path.read_bytes)
        shown = render_caption(caption) if caption.strip() else None
        await self.pacer.wait(self.target.chat_id)
        await call(
            self.bot.send_document(
                self.target.chat_id,
                document=data,
                filename=path.name,
                caption=shown.text if shown else None,
                caption_entities=shown.entities if shown else None,
                message_thread_id=self.target.thread_id,
                reply_parameters=self._reply_parameters(),
            )
        )

    # -- Bot API calls -----------------------------------------------------------
    def _drafting(self) -> bool:
        return self.target.private and self.drafts.enabled and not self._drafts_refused

    def _reply_parameters(self) -> ReplyParameters | None:
        if self.target.reply_to is None:
            return None
        return ReplyParameters(self.target.reply_to, allow_sending_without_reply=True)

    async def _draft(self, handle: Handle, shown: Rendered) -> bool:
        """Show ``shown`` as the draft; False when drafts don't work (for this reply, or at all on this server)."""
        await self.pacer.wait(self.target.chat_id)
        try:
            await self.bot.send_message_draft(
                self.target.chat_id,
                handle.id,
                shown.text,
                message_thread_id=self.target.thread_id,
                entities=shown.entities,
            )
        except (BadRequest, InvalidToken, EndPointNotFound) as exc:
            if draft_method_missing(exc):
                self.drafts.disable(exc)  # the server has no drafts: every chat posts and edits from now on
            else:
                log.info("draft refused in %s (%s); this reply is posted and edited instead", self.target.chat_id, exc)
                self._drafts_refused = True
            self._live_draft = None
            return False
        except TelegramError as exc:  # flood control, network: the streamer decides
            raise translate(exc) from exc
        handle.shown = shown
        self._live_draft, self._drafted_at = handle, time.monotonic()
        return True

    async def _send(self, shown: Rendered, markup: InlineKeyboardMarkup | None = None) -> Message:
        await self.pacer.wait(self.target.chat_id)
        self._posted = True
        message = await call(
            self.bot.send_message(
                self.target.chat_id,
                shown.text,
                entities=shown.entities,
                message_thread_id=self.target.thread_id,
                reply_parameters=self._reply_parameters(),
                reply_markup=markup,
            )
        )
        assert message is not None  # "not modified" cannot happen on a send
        return message

    async def _edit(self, handle: Handle, shown: Rendered) -> None:
        await self.pacer.wait(self.target.chat_id)
        await call(
            self.bot.edit_message_text(
                shown.text, chat_id=self.target.chat_id, message_id=handle.id, entities=shown.entities
            )
        )
        handle.shown = shown
