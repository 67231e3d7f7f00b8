"""The Feishu reply sink: a CardKit streaming card per reply message, with fallbacks that never lose text.

A reply message is a :class:`CardHandle` in one of three modes:

* ``stream`` — a CardKit entity (:func:`~.cards.streaming_card`) sent as
  ``{"type":"card","data":{"card_id"}}``; ``edit`` puts the *full* text so far into its
  markdown element with a strictly increasing ``sequence``; ``finalize`` turns streaming
  off (``card.settings``) so the chat preview stops saying "generating". Calls on one
  card are at least :data:`CARD_GAP` apart (Feishu allows 10 per second per card; the
  core's ``min_edit_interval`` paces the text below that). A card that left streaming
  mode (the 10-minute lifetime) is switched back on; a sequence that fell behind jumps.
* ``patch`` — a card message of its own (:func:`~.cards.plain_card`) replaced with
  ``im.v1.message.patch``: used when CardKit refuses the card or an update (and for the
  whole bot when the app lacks the CardKit permission, or ``streaming: false``).
* ``plain`` — when a card cannot hold the content (230099 / ErrCode 11310 "card table
  number over limit", 230025 too long) the card keeps what it showed, is closed, and the
  rest goes out as a rich-text post (Markdown ``md``; plain ``text`` if the post is
  refused), updated once at the end. Nothing is lost.

Rate limits (99991400 + ``x-ogw-ratelimit-reset``) surface as
:class:`~core.RateLimited`: the core waits them out. A message that was recalled is
:class:`~core.MessageGone`. An approval prompt or a file ends the card being written
(streaming off); the reply goes on in a new card below it, so a thread reads top to
bottom. Sends carry a ``uuid`` (Feishu drops a repeated one for an hour), so a send
retried after an ambiguous failure never shows twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import ApprovalRequest, MessageGone, SinkError, SinkLimits
from core.intake import human_size
from core.pacing import ChatPacer as Pacer
from core.sink import TargetedSink

from . import approvals, cards
from .api import FeishuApi, dumps
from .errors import (
    NO_PERMISSION,
    SEQUENCE_CONFLICT,
    STREAM_CLOSED,
    FeishuApiError,
    FeishuNetworkError,
    cannot_hold,
    is_gone,
    is_rate_limited,
    to_sink_error,
)
from .events import FeishuTarget

log = logging.getLogger(__name__)

CARD_GAP = 0.12  # seconds between two calls on one card (Feishu: at most 10 per second)
SEND_GAP = 0.21  # seconds between two messages the bot sends into one chat (Feishu: 5 per second)
IMAGE_LIMIT = 10 * 1024 * 1024
FILE_LIMIT = 30 * 1024 * 1024
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico", ".heic"}
FILE_TYPES = {
    ".opus": "opus",
    ".mp4": "mp4",
    ".pdf": "pdf",
    ".doc": "doc",
    ".docx": "doc",
    ".xls": "xls",
    ".xlsx": "xls",
    ".ppt": "ppt",
    ".pptx": "ppt",
}
Mode = Literal["stream", "patch", "plain"]


class Capabilities:
    """What the bot may use, learnt as it goes (shared by every reply of one adapter)."""

    def __init__(self, cardkit: bool = True) -> None:
        self.cardkit = cardkit

    def cardkit_refused(self, exc: FeishuApiError) -> None:
        if self.cardkit:
            log.warning(
                "Feishu refused CardKit (%s): replies update their card by message patch from now on "
                "(grant the app the cardkit:card:write permission to stream)",
                exc,
            )
        self.cardkit = False


class ChatPacer(Pacer[str]):
    """Spaces the bot's sends into each chat (Feishu counts 5 per second per chat, shared by all bots in it)."""

    def __init__(self, interval: float = SEND_GAP) -> None:
        super().__init__(interval, max_chats=4096)


@dataclass(frozen=True)
class SinkOptions:
    streaming: bool = True
    edit_interval: float = 0.3
    max_len: int = 8000
    typing_interval: float = 5.0
    working_reaction: str | None = "Typing"


@dataclass(eq=False)
class CardHandle:
    """A sink handle: one reply message as the core sees it.

    ``shown`` is the reply text delivered so far; this message shows ``shown[base:]``
    (after an approval prompt the reply continues in a new card below it).
    """

    message_id: str | None
    mode: Mode
    card_id: str | None = None
    shown: str = ""
    base: int = 0
    card_text: str = ""  # what the message shows now
    sequence: int = 0
    streaming: bool = False
    moved: bool = False  # the next text goes into a new card (after a prompt or a file)
    last_call: float = 0.0
    plain_kind: str = "post"  # plain mode: "post" or "text"


@dataclass(eq=False)
class FeishuSink(TargetedSink):
    api: FeishuApi
    target: FeishuTarget
    options: SinkOptions = field(default_factory=SinkOptions)
    caps: Capabilities = field(default_factory=Capabilities)
    pacer: ChatPacer = field(default_factory=ChatPacer)

    def __post_init__(self) -> None:
        self.limits = SinkLimits(
            max_len=self.options.max_len,
            min_edit_interval=self.options.edit_interval,
            typing_interval=self.options.typing_interval,
            measure=cards.card_measure,
        )
        self._id = secrets.token_hex(8)
        self._sent = 0
        self._open: CardHandle | None = None
        self._approvals: dict[str, str] = {}
        self._reaction: str | None = None
        self._working_done = False
        self._working_lock = asyncio.Lock()

    # -- the contract ----------------------------------------------------------------
    async def post(self, text: str) -> CardHandle:
        handle = await self._open_card(text)
        handle.shown = text
        self._open = handle
        return handle

    async def edit(self, handle: CardHandle, text: str) -> None:
        if text == handle.shown:
            return
        if handle.moved:
            await self._continue_below(handle, text)
            return
        if handle.mode != "plain":  # a plain message is only updated at the end (about 20 edits allowed)
            await self._show(handle, self._body(handle, text))
        handle.shown = text

    async def finalize(self, handle: CardHandle | None, text: str) -> None:
        if handle is None:
            if self._open is not None:  # live updates broke off: the card they left must not stay "generating"
                await self._close_stream(self._open, quietly=True)
            await self._send_complete(text)
        elif handle.moved:
            rest = text[len(handle.shown) :].lstrip("\n") if text.startswith(handle.shown) else text
            if rest.strip():
                await self._send_complete(rest)
            handle.shown, handle.moved = text, False
        else:
            body = self._body(handle, text)
            if handle.mode != "plain" and body != handle.card_text:
                await self._show(handle, body)
            if handle.mode == "plain":  # (a card that could not hold the text has moved its base on)
                await self._finish_plain(handle, self._body(handle, text))
            elif handle.streaming:
                await self._close_stream(handle)
            handle.shown = text
        if handle is not None and handle is self._open:
            self._open = None
        await self._clear_working()

    async def notify(self, text: str) -> None:
        await self._send_complete(text)  # the working reaction stays: the reply may still come

    async def typing(self) -> None:
        emoji = self.options.working_reaction
        message_id = self.target.answering
        if not emoji or not message_id:
            return
        async with self._working_lock:
            if self._reaction is not None or self._working_done:
                return
            try:
                self._reaction = await self.api.react(message_id, emoji) or None
            except (FeishuApiError, FeishuNetworkError) as exc:
                log.debug("Feishu: no working reaction on %s (%s)", message_id, exc)
                self._working_done = True  # don't try again for this reply

    async def show_approval(self, request: ApprovalRequest) -> None:
        if request.pending:
            if request.id in self._approvals:
                return  # already shown (a retried call)
            await self._move_below()
            self._approvals[request.id] = await self._send("interactive", dumps(approvals.prompt_card(request)))
            return
        card = approvals.decided_card(request)
        message_id = self._approvals.get(request.id)
        if message_id is not None:
            try:
                await self._call(self.api.patch(message_id, card))  # a rate limit: retried by the core
                self._approvals.pop(request.id, None)
                return
            except MessageGone:
                log.info("Feishu: approval prompt %s is gone; sending the decision anew", message_id)
        await self._send("interactive", dumps(card))
        self._approvals.pop(request.id, None)

    async def send_file(self, path: Path, caption: str = "") -> None:
        data = await asyncio.to_thread(path.read_bytes)
        await self._move_below()
        name = path.name
        if not data:
            await self._send_complete(f"📎 {name} is empty, so it was not sent.")
            return
        image = path.suffix.lower() in IMAGE_SUFFIXES and len(data) <= IMAGE_LIMIT
        if not image and len(data) > FILE_LIMIT:
            await self._send_complete(
                f"📎 {name} is {human_size(len(data))}; Feishu takes files of at most {human_size(FILE_LIMIT)}."
            )
            return
        if image:
            try:
                key = await self.api.upload_image(data)
            except FeishuApiError as exc:
                if is_rate_limited(exc) or len(data) > FILE_LIMIT:
                    raise to_sink_error(exc) from exc
                log.info("Feishu refused %s as an image (%s); sending it as a file", name, exc)
                image = False
            except FeishuNetworkError as exc:
                raise to_sink_error(exc) from exc
            else:
                await self._send("image", dumps({"image_key": key}))
        if not image:
            file_type = FILE_TYPES.get(path.suffix.lower(), "stream")
            key = await self._call(self.api.upload_file(name, data, file_type))
            await self._send("file", dumps({"file_key": key}))
        if caption.strip():
            await self._send_complete(caption)

    # -- opening and showing a card -----------------------------------------------------
    def _body(self, handle: CardHandle, text: str) -> str:
        return text[handle.base :]

    async def _open_card(self, text: str) -> CardHandle:
        """A new reply message showing ``text``: a streaming card, else a patchable one, else a post."""
        if self.options.streaming and self.caps.cardkit:
            card_id: str | None = None
            try:
                card_id = await self.api.create_card(cards.streaming_card(text))
            except FeishuApiError as exc:
                if is_rate_limited(exc):
                    raise to_sink_error(exc) from exc
                if not cannot_hold(exc):
                    self._cardkit_refused(exc)
            except FeishuNetworkError as exc:
                raise to_sink_error(exc) from exc
            if card_id is not None:
                try:
                    message_id = await self._send("interactive", cards.entity_content(card_id), raw=True)
                except FeishuApiError as exc:
                    if is_rate_limited(exc):
                        raise to_sink_error(exc) from exc
                    log.info("Feishu refused the streaming card %s (%s); using a patched card", card_id, exc)
                else:
                    handle = CardHandle(message_id, "stream", card_id, card_text=text, streaming=True)
                    handle.last_call = time.monotonic()
                    return handle
        try:
            message_id = await self._send("interactive", dumps(cards.plain_card(text)), raw=True)
            return CardHandle(message_id, "patch", card_text=text)
        except FeishuApiError as exc:
            if not cannot_hold(exc):
                raise to_sink_error(exc) from exc
        handle = CardHandle(None, "plain")
        await self._finish_plain(handle, text)
        return handle

    def _cardkit_refused(self, exc: FeishuApiError) -> None:
        if exc.code in NO_PERMISSION:
            self.caps.cardkit_refused(exc)
        else:
            log.info("Feishu refused a streaming card (%s); this reply updates its card by patch", exc)

    async def _show(self, handle: CardHandle, body: str) -> None:
        """Make the message show ``body`` (stream or patch; a card that cannot hold it goes plain)."""
        if handle.mode == "stream":
            try:
                await self._stream_content(handle, body)
                return
            except FeishuNetworkError as exc:
                raise to_sink_error(exc) from exc
            except FeishuApiError as exc:
                if is_rate_limited(exc) or is_gone(exc):
                    raise to_sink_error(exc) from exc
                if cannot_hold(exc):
                    await self._overflow(handle, body)
                    return
                log.info("Feishu refused a card update (%s); patching the message instead", exc)
                await self._close_stream(handle, quietly=True)
                handle.mode = "patch"
        try:
            await self.api.patch(self._message_id(handle), cards.plain_card(body))
            handle.card_text = body
        except FeishuApiError as exc:
            if not cannot_hold(exc):
                raise to_sink_error(exc) from exc
            await self._overflow(handle, body)
        except FeishuNetworkError as exc:
            raise to_sink_error(exc) from exc

    async def _stream_content(self, handle: CardHandle, body: str) -> None:
        """One ``card_element.content`` call, recovering once from a closed stream or a stale sequence."""
        assert handle.card_id is not None
        recovered = False
        while True:
            await self._pace(handle)
            handle.sequence += 1
            try:
                await self.api.card_content(handle.card_id, cards.ANSWER, body, handle.sequence)
                handle.card_text = body
                return
            except FeishuApiError as exc:
                if recovered:
                    raise
                recovered = True
                if exc.code == SEQUENCE_CONFLICT:
                    handle.sequence += 1000  # a call we thought failed went through
                    continue
                if exc.code in STREAM_CLOSED:
                    log.info("Feishu: card %s left streaming mode (%s); turning it back on", handle.card_id, exc.code)
                    handle.sequence += 1
                    await self.api.card_settings(handle.card_id, cards.reopening_settings(), handle.sequence)
                    continue
                raise

    async def _close_stream(self, handle: CardHandle, *, quietly: bool = False) -> None:
        """Turn streaming off (the preview stops saying "generating"); rate limits surface unless ``quietly``."""
        if not handle.streaming or handle.card_id is None:
            return
        await self._pace(handle)
        handle.sequence += 1
        try:
            await self.api.card_settings(handle.card_id, cards.closing_settings(handle.card_text), handle.sequence)
        except FeishuApiError as exc:
            if is_rate_limited(exc) and not quietly:
                raise to_sink_error(exc) from exc
            if is_gone(exc) and not quietly:
                raise to_sink_error(exc) from exc
            log.info("Feishu: could not end streaming of card %s (%s)", handle.card_id, exc)
            if not quietly and handle.message_id:
                try:  # the message then shows a plain card instead of the entity
                    await self.api.patch(handle.message_id, cards.plain_card(handle.card_text))
                except (FeishuApiError, FeishuNetworkError) as again:
                    log.warning("Feishu: card %s may keep showing 'generating' (%s)", handle.card_id, again)
        except FeishuNetworkError as exc:
            if not quietly:
                raise to_sink_error(exc) from exc
        handle.streaming = False

    async def _pace(self, handle: CardHandle) -> None:
        wait = handle.last_call + CARD_GAP - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        handle.last_call = time.monotonic()

    def _message_id(self, handle: CardHandle) -> str:
        if handle.message_id is None:
            raise SinkError("the reply message was never sent")
        return handle.message_id

    # -- content a card cannot hold ------------------------------------------------------
    async def _overflow(self, handle: CardHandle, body: str) -> None:
        """The card keeps what it shows (streaming off); the rest of ``body`` goes out as a post."""
        log.info("Feishu: a card cannot hold this reply (too many tables or too long); continuing as rich text")
        await self._close_stream(handle, quietly=True)
        shown = handle.card_text
        rest = body[len(shown) :] if shown and body.startswith(shown) else body
        rest = rest.lstrip("\n") or rest  # the post starts with words, not the paragraph break
        handle.base += len(body) - len(rest)
        handle.mode, handle.message_id, handle.card_id, handle.card_text = "plain", None, None, ""
        await self._finish_plain(handle, rest)

    async def _finish_plain(self, handle: CardHandle, body: str) -> None:
        """Show ``body`` in the handle's post (sent or updated); a refused update sends the rest anew."""
        if not body.strip() or body == handle.card_text:
            return
        if handle.message_id is None:
            handle.message_id, handle.plain_kind = await self._send_plain(body)
            handle.card_text = body
            return
        kind = handle.plain_kind
        content = cards.post_content(body) if kind == "post" else cards.text_content(body)
        try:
            await self.api.update(handle.message_id, kind, content)
            handle.card_text = body
            return
        except FeishuApiError as exc:
            if is_rate_limited(exc):
                raise to_sink_error(exc) from exc
            log.info("Feishu refused to update a post (%s); sending the rest as a new message", exc)
        except FeishuNetworkError as exc:
            raise to_sink_error(exc) from exc
        shown = handle.card_text
        rest = body[len(shown) :].lstrip("\n") if body.startswith(shown) else body
        if rest.strip():
            await self._send_plain(rest)
        handle.card_text = body

    async def _send_plain(self, text: str) -> tuple[str, str]:
        """``text`` as a rich-text post (Markdown), else as plain text; returns (message id, kind)."""
        try:
            return await self._send("post", cards.post_content(text), raw=True), "post"
        except FeishuApiError as exc:
            if is_rate_limited(exc) or is_gone(exc):
                raise to_sink_error(exc) from exc
            log.info("Feishu refused a post (%s); sending plain text", exc)
        return await self._send("text", cards.text_content(text)), "text"

    async def _send_complete(self, text: str) -> None:
        """A message complete in itself (a notice, the next part of a long reply)."""
        if not text.strip():
            return
        try:
            await self._send("interactive", dumps(cards.plain_card(text)), raw=True)
            return
        except FeishuApiError as exc:
            if is_rate_limited(exc) or not cannot_hold(exc):
                raise to_sink_error(exc) from exc
        await self._send_plain(text)

    # -- prompts and files end the card being written ---------------------------------
    async def _move_below(self) -> None:
        handle = self._open
        if handle is None or handle.moved:
            return
        if handle.mode == "stream":
            await self._close_stream(handle)
        elif handle.mode == "plain":  # its post is updated only at the end: bring it up to date first
            await self._finish_plain(handle, self._body(handle, handle.shown))
        handle.moved = True

    async def _continue_below(self, handle: CardHandle, text: str) -> None:
        rest = text[len(handle.shown) :] if text.startswith(handle.shown) else text
        body = rest.lstrip("\n")
        if not body.strip():
            return  # only the separator so far: wait for words
        fresh = await self._open_card(body)
        fresh.base = len(text) - len(body)
        fresh.shown = text
        for name in ("message_id", "mode", "card_id", "shown", "base", "card_text", "sequence", "streaming"):
            setattr(handle, name, getattr(fresh, name))
        handle.last_call, handle.plain_kind, handle.moved = fresh.last_call, fresh.plain_kind, False

    # -- sending -------------------------------------------------------------------------
    async def _send(self, msg_type: str, content: str, *, raw: bool = False) -> str:
        """Send a message where the reply goes; returns its id. ``raw``: raise :class:`FeishuApiError`."""
        target = self.target
        uuid = f"ccb-{self._id}-{self._sent}"
        await self.pacer.wait(target.chat_id)
        try:
            try:
                data = await self.api.send(
                    msg_type,
                    content,
                    chat_id=target.chat_id,
                    reply_to=target.reply_to,
                    in_thread=target.in_thread,
                    uuid=uuid,
                )
            except FeishuApiError as exc:
                if target.reply_to is None or not is_gone(exc):
                    raise
                log.info("Feishu: the message answered is gone; sending into the chat instead")
                data = await self.api.send(msg_type, content, chat_id=target.chat_id, uuid=uuid + "-c")
        except FeishuApiError as exc:
            if raw:
                raise
            raise to_sink_error(exc) from exc
        except FeishuNetworkError as exc:
            raise to_sink_error(exc) from exc
        self._sent += 1
        return str(data.message_id)

    @staticmethod
    async def _call(coro: Any) -> Any:
        try:
            return await coro
        except (FeishuApiError, FeishuNetworkError) as exc:
            raise to_sink_error(exc) from exc

    async def _clear_working(self) -> None:
        async with self._working_lock:
            self._working_done = True
            reaction, self._reaction = self._reaction, None
            if reaction is None or self.target.answering is None:
                return
            try:
                await self.api.unreact(self.target.answering, reaction)
            except (FeishuApiError, FeishuNetworkError) as exc:
                log.debug("Feishu: could not remove the working reaction (%s)", exc)


__all__ = ["Capabilities", "CardHandle", "ChatPacer", "FeishuSink", "SinkOptions"]
