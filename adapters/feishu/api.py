"""The Open Platform's REST API through lark-oapi, without ever blocking the bot's event loop.

lark-oapi's sync methods use ``requests``; its async ``a*`` methods use httpx but
still fetch the tenant token with blocking ``requests``, lose ``msg`` and file names to
lower-cased headers, and leave JSON error bodies of downloads unparsed. So every call
here is a *sync* lark-oapi method run on a small thread pool of the adapter's own
(``api_workers``): nothing blocks the loop, answers are parsed fully, and a slow
Open Platform cannot starve the default executor.

lark-oapi caches tenant tokens process-wide by app id and never refreshes one the
platform revoked: a call answered with an invalid-token code forgets it and is retried
once with a fresh one. Calls take a *factory* of the request, so a retry (a multipart
upload included) is built afresh.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import lark_oapi as lark
import requests
from lark_oapi.api.cardkit.v1 import (
    ContentCardElementRequest,
    ContentCardElementRequestBody,
    CreateCardRequest,
    CreateCardRequestBody,
    SettingsCardRequest,
    SettingsCardRequestBody,
)
from lark_oapi.api.im.v1 import (
    CreateFileRequest,
    CreateFileRequestBody,
    CreateImageRequest,
    CreateImageRequestBody,
    CreateMessageReactionRequest,
    CreateMessageReactionRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteMessageReactionRequest,
    Emoji,
    GetMessageResourceRequest,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
    UpdateMessageRequest,
    UpdateMessageRequestBody,
)
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.core.token import TokenManager

from .errors import TOKEN_INVALID, FeishuApiError, FeishuNetworkError

log = logging.getLogger(__name__)

NETWORK_ERRORS = (requests.RequestException, OSError)


def dumps(value: Any) -> str:
    """JSON as Feishu counts it (UTF-8, not \\u-escaped)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class FeishuApi:
    """One app's lark-oapi client plus the pool its blocking calls run on."""

    def __init__(self, app_id: str, app_secret: str, domain: str, *, timeout: float = 30.0, workers: int = 16) -> None:
        self.app_id = app_id
        self.domain = domain
        self.client = (
            lark.Client.builder()
            .app_id(app_id)
            .app_secret(app_secret)
            .domain(domain)
            .timeout(timeout)
            .log_level(lark.LogLevel.WARNING)
            .build()
        )
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing ------------------------------------------------------------------
    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the API pool."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"feishu-{self.app_id}")
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=False, cancel_futures=True)

    def forget_token(self) -> None:
        """Drop lark-oapi's cached tenant token of this app (the next call fetches one)."""
        cache = getattr(TokenManager.cache, "cache", None)
        if isinstance(cache, dict):
            cache.pop(f"self_tenant_token:{self.app_id}", None)

    async def tenant_token(self, *, fresh: bool = False) -> str:
        """The tenant access token (checks the app id and secret); ``fresh`` skips lark-oapi's cache."""
        if fresh:
            self.forget_token()
        try:
            return str(await self.run(TokenManager.get_self_tenant_token, self.client.config))
        except ObtainAccessTokenException as exc:
            raise FeishuApiError("auth.v3.tenant_access_token", exc.code, exc.msg) from None
        except NETWORK_ERRORS as exc:
            raise FeishuNetworkError("auth.v3.tenant_access_token", exc) from None

    async def call(self, what: str, method: Callable[[Any], Any], build: Callable[[], Any]) -> Any:
        """``method(build())`` on the pool; returns the response, raises :class:`FeishuApiError` unless code 0."""
        for attempt in (1, 2):
            try:
                resp = await self.run(method, build())
            except ObtainAccessTokenException as exc:
                raise FeishuApiError(what, exc.code, exc.msg) from None
            except NETWORK_ERRORS as exc:
                raise FeishuNetworkError(what, exc) from None
            except ValueError as exc:  # a body that is not JSON (a proxy's error page)
                raise FeishuApiError(what, None, f"unreadable answer ({exc})") from None
            if resp.success():
                return resp
            if resp.code in TOKEN_INVALID and attempt == 1:
                log.info("Feishu: the tenant token was refused (%s); fetching a new one", resp.code)
                self.forget_token()
                continue
            raise FeishuApiError.from_response(what, resp)
        raise AssertionError("unreachable")

    # -- bot ---------------------------------------------------------------------------
    async def bot_info(self) -> dict[str, Any]:
        """``GET /open-apis/bot/v3/info`` (no typed call in lark-oapi; ``bot`` at the top level, or under ``data``)."""

        def build() -> lark.BaseRequest:
            return (
                lark.BaseRequest.builder()
                .http_method(lark.HttpMethod.GET)
                .uri("/open-apis/bot/v3/info")
                .token_types({lark.AccessTokenType.TENANT})
                .build()
            )

        resp = await self.call("bot.v3.info", self.client.request, build)
        try:
            answer = json.loads(resp.raw.content)
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        bot = answer.get("bot") or data.get("bot") or {}  # documented at the top level; some gateways nest it
        if not isinstance(bot, dict) or not bot.get("open_id"):
            raise FeishuApiError("bot.v3.info", None, "the answer names no bot (is the app's bot feature enabled?)")
        return bot

    # -- messages ----------------------------------------------------------------------
    async def send(
        self,
        msg_type: str,
        content: str,
        *,
        chat_id: str,
        reply_to: str | None = None,
        in_thread: bool = False,
        uuid: str | None = None,
    ) -> Any:
        """A new message: a reply to ``reply_to`` (in its thread) or a message in ``chat_id``; returns its data."""
        if reply_to is not None:

            def build_reply() -> ReplyMessageRequest:
                body = ReplyMessageRequestBody.builder().msg_type(msg_type).content(content).reply_in_thread(in_thread)
                if uuid:
                    body = body.uuid(uuid)
                return ReplyMessageRequest.builder().message_id(reply_to).request_body(body.build()).build()

            resp = await self.call("im.v1.message.reply", self.client.im.v1.message.reply, build_reply)
            return resp.data

        def build_create() -> CreateMessageRequest:
            body = CreateMessageRequestBody.builder().receive_id(chat_id).msg_type(msg_type).content(content)
            if uuid:
                body = body.uuid(uuid)
            return CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body.build()).build()

        resp = await self.call("im.v1.message.create", self.client.im.v1.message.create, build_create)
        return resp.data

    async def patch(self, message_id: str, card: dict[str, Any]) -> None:
        """Replace a card message's card (``im.v1.message.patch``)."""

        def build() -> PatchMessageRequest:
            body = PatchMessageRequestBody.builder().content(dumps(card)).build()
            return PatchMessageRequest.builder().message_id(message_id).request_body(body).build()

        await self.call("im.v1.message.patch", self.client.im.v1.message.patch, build)

    async def update(self, message_id: str, msg_type: str, content: str) -> None:
        """Replace a text / post message (``im.v1.message.update``; about 20 times per message)."""

        def build() -> UpdateMessageRequest:
            body = UpdateMessageRequestBody.builder().msg_type(msg_type).content(content).build()
            return UpdateMessageRequest.builder().message_id(message_id).request_body(body).build()

        await self.call("im.v1.message.update", self.client.im.v1.message.update, build)

    async def react(self, message_id: str, emoji: str) -> str | None:
        def build() -> CreateMessageReactionRequest:
            body = CreateMessageReactionRequestBody.builder().reaction_type(Emoji.builder().emoji_type(emoji).build())
            return CreateMessageReactionRequest.builder().message_id(message_id).request_body(body.build()).build()

        resp = await self.call("im.v1.message_reaction.create", self.client.im.v1.message_reaction.create, build)
        return getattr(resp.data, "reaction_id", None)

    async def unreact(self, message_id: str, reaction_id: str) -> None:
        def build() -> DeleteMessageReactionRequest:
            return DeleteMessageReactionRequest.builder().message_id(message_id).reaction_id(reaction_id).build()

        await self.call("im.v1.message_reaction.delete", self.client.im.v1.message_reaction.delete, build)

    # -- CardKit -----------------------------------------------------------------------
    async def create_card(self, card: dict[str, Any]) -> str:
        def build() -> CreateCardRequest:
            body = CreateCardRequestBody.builder().type("card_json").data(dumps(card)).build()
            return CreateCardRequest.builder().request_body(body).build()

        resp = await self.call("cardkit.v1.card.create", self.client.cardkit.v1.card.create, build)
        return str(resp.data.card_id)

    async def card_content(self, card_id: str, element_id: str, content: str, sequence: int) -> None:
        """The full text so far of a streaming element (``sequence`` strictly increasing per card)."""

        def build() -> ContentCardElementRequest:
            body = ContentCardElementRequestBody.builder().content(content).sequence(sequence).build()
            return (
                ContentCardElementRequest.builder().card_id(card_id).element_id(element_id).request_body(body).build()
            )

        await self.call("cardkit.v1.card_element.content", self.client.cardkit.v1.card_element.content, build)

    async def card_settings(self, card_id: str, settings: dict[str, Any], sequence: int) -> None:
        def build() -> SettingsCardRequest:
            body = SettingsCardRequestBody.builder().settings(dumps(settings)).sequence(sequence).build()
            return SettingsCardRequest.builder().card_id(card_id).request_body(body).build()

        await self.call("cardkit.v1.card.settings", self.client.cardkit.v1.card.settings, build)

    # -- files -------------------------------------------------------------------------
    async def upload_image(self, data: bytes) -> str:
        def build() -> CreateImageRequest:
            body = CreateImageRequestBody.builder().image_type("message").image(io.BytesIO(data)).build()
            return CreateImageRequest.builder().request_body(body).build()

        resp = await self.call("im.v1.image.create", self.client.im.v1.image.create, build)
        return str(resp.data.image_key)

    async def upload_file(self, name: str, data: bytes, file_type: str) -> str:
        def build() -> CreateFileRequest:
            body = CreateFileRequestBody.builder().file_type(file_type).file_name(name).file(io.BytesIO(data)).build()
            return CreateFileRequest.builder().request_body(body).build()

        resp = await self.call("im.v1.file.create", self.client.im.v1.file.create, build)
        return str(resp.data.file_key)

    async def download(self, message_id: str, key: str, kind: str) -> bytes:
        """A resource of a message a user sent (``im.v1.message_resource.get``, ``kind`` image or file)."""

        def build() -> GetMessageResourceRequest:
            return GetMessageResourceRequest.builder().message_id(message_id).file_key(key).type(kind).build()

        resp = await self.call("im.v1.message_resource.get", self.client.im.v1.message_resource.get, build)
        return bytes(resp.file.read())
