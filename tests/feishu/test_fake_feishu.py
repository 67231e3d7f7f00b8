"""The fake Feishu against the REAL lark-oapi 1.7.5: REST, CardKit, long connection, HTTP callbacks.

Sync lark-oapi methods block (``requests``): they run in ``asyncio.to_thread`` because the
fake serves on this test's loop. Async ``a*`` methods run on the loop, after
:func:`prime_tenant_token` (their token fetch blocks too; one test pins that).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import lark_oapi as lark
import lark_oapi.ws.client as ws_client_module
import pytest
import requests
from aiohttp import web
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
    CreateMessageRequest,
    CreateMessageRequestBody,
    GetMessageResourceRequest,
    P2ImMessageReceiveV1,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
    UpdateMessageRequest,
    UpdateMessageRequestBody,
)
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.core.utils import AESCipher
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTrigger, P2CardActionTriggerResponse

from tests.fakes.platform_server import Failure

from . import callbacks, errors
from .fake_feishu import FakeFeishu
from .sdk import LarkWsThread, forget_tenant_token, lark_client, prime_tenant_token

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu(repush_after=0.5) as fake:
        yield fake


@pytest.fixture
def client(feishu: FakeFeishu) -> lark.Client:
    return lark_client(feishu)


async def run(method: Callable[[Any], Any], request: Any) -> Any:
    """A sync lark-oapi method, off the loop the fake serves on."""
    return await asyncio.to_thread(method, request)


def text(value: str) -> str:
    return json.dumps({"text": value})


def create_text(chat_id: str, value: str, *, uuid: str | None = None) -> CreateMessageRequest:
    body = CreateMessageRequestBody.builder().receive_id(chat_id).msg_type("text").content(text(value))
    if uuid:
        body = body.uuid(uuid)
    return CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body.build()).build()


def create_message(chat_id: str, msg_type: str, content: str) -> CreateMessageRequest:
    body = CreateMessageRequestBody.builder().receive_id(chat_id).msg_type(msg_type).content(content).build()
    return CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()


def reply(message_id: str, msg_type: str, content: str, *, in_thread: bool = False) -> ReplyMessageRequest:
    body = ReplyMessageRequestBody.builder().msg_type(msg_type).content(content).reply_in_thread(in_thread).build()
    return ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()


def card_v1(value: str) -> str:
    return json.dumps({"config": {"update_multi": True}, "elements": [{"tag": "markdown", "content": value}]})


def streaming_card(*element_ids: str) -> str:
    elements = [{"tag": "markdown", "element_id": e, "content": ""} for e in element_ids or ("answer",)]
    return json.dumps({"schema": "2.0", "config": {"streaming_mode": True}, "body": {"elements": elements}})


def bot_info_request() -> lark.BaseRequest:
    return (
        lark.BaseRequest.builder()
        .http_method(lark.HttpMethod.GET)
        .uri("/open-apis/bot/v3/info")
        .token_types({lark.AccessTokenType.TENANT})
        .build()
    )


# -- auth and bot info ------------------------------------------------------------------
async def test_tenant_token_then_bot_info(feishu: FakeFeishu, client: lark.Client) -> None:
    resp = await run(client.request, bot_info_request())

    token_call = feishu.called("auth.v3.tenant_access_token.internal")[0]
    assert token_call.params == {"app_id": feishu.app_id, "app_secret": feishu.app_secret}
    assert resp.code == 0 and resp.raw.status_code == 200
    bot = json.loads(resp.raw.content)["bot"]  # no typed call: `bot` is at the top level
    assert bot["open_id"] == feishu.bot.open_id and bot["app_name"] == feishu.app_name
    assert feishu.called("bot.v3.info")[0].code == 0

    # async: httpx lower-cases header names, so lark-oapi misses "Content-Type" and leaves msg unset
    aresp = await client.arequest(bot_info_request())
    assert aresp.code == 0 and aresp.msg is None
    assert json.loads(aresp.raw.content)["bot"]["open_id"] == feishu.bot.open_id
    assert len(feishu.called("auth.v3.tenant_access_token.internal")) == 1  # cached by app id


async def test_wrong_app_secret_raises_from_the_sdk(feishu: FakeFeishu) -> None:
    bad = lark_client(feishu, app_secret="not-the-secret")
    with pytest.raises(ObtainAccessTokenException) as caught:
        await run(bad.im.v1.message.create, create_text("oc_any", "hi"))
    assert caught.value.code == errors.APP_SECRET_INVALID == 10014
    assert caught.value.msg == "app secret invalid"
    assert feishu.called("im.v1.message.create") == []


async def test_requests_need_a_tenant_token_the_fake_issued(feishu: FakeFeishu, client: lark.Client) -> None:
    url = f"{feishu.url}/open-apis/im/v1/messages?receive_id_type=chat_id"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={}) as missing:
            assert (await missing.json())["code"] == errors.MISSING_TOKEN
        async with session.post(url, json={}, headers={"Authorization": "Bearer t-made-up"}) as forged:
            assert (await forged.json())["code"] == errors.INVALID_TOKEN

    chat = feishu.add_chat()
    await run(client.im.v1.message.create, create_text(chat.chat_id, "before"))
    feishu.revoke_tokens()  # lark-oapi keeps using its cached token and never refreshes it
    resp = await run(client.im.v1.message.create, create_text(chat.chat_id, "after"))
    assert resp.code == errors.INVALID_TOKEN
    forget_tenant_token(feishu.app_id)
    assert (await run(client.im.v1.message.create, create_text(chat.chat_id, "again"))).success()


async def test_async_call_without_a_cached_token_blocks_the_loop(feishu: FakeFeishu) -> None:
    """``a*`` methods fetch the token with blocking requests: on the fake's own loop that cannot be answered."""
    impatient = lark_client(feishu, timeout=0.5)
    with pytest.raises(requests.exceptions.Timeout):
        await impatient.im.v1.message.acreate(create_text("oc_any", "hi"))
    await prime_tenant_token(impatient)
    chat = feishu.add_chat()
    assert (await impatient.im.v1.message.acreate(create_text(chat.chat_id, "hi"))).success()


# -- messages ---------------------------------------------------------------------------
async def test_create_reply_in_thread_patch_and_update(feishu: FakeFeishu, client: lark.Client) -> None:
    chat = feishu.add_chat("Team")
    alice = feishu.add_user("Alice")
    question = feishu.user_message(alice, chat=chat, text="help?", mentions=[feishu.bot]).message

    created = await run(client.im.v1.message.create, create_text(chat.chat_id, "hello"))
    assert created.success() and created.data.chat_id == chat.chat_id
    assert created.data.sender.sender_type == "app" and created.data.sender.id == feishu.app_id

    first = await run(client.im.v1.message.reply, reply(question.message_id, "text", text("on it"), in_thread=True))
    thread_id = first.data.thread_id
    assert thread_id.startswith("omt_") and first.data.root_id == first.data.parent_id == question.message_id
    assert question.thread_id == thread_id  # the root now heads a thread

    card = await run(client.im.v1.message.reply, reply(first.data.message_id, "interactive", card_v1("thinking…")))
    assert card.data.thread_id == thread_id and card.data.root_id == question.message_id
    assert card.data.parent_id == first.data.message_id
    follow_up = feishu.user_message(alice, reply_to=feishu.message(card.data.message_id), text="thanks")
    assert follow_up.message.thread_id == thread_id
    assert follow_up.event["event"]["message"]["thread_id"] == thread_id
    assert [m.message_id for m in feishu.thread(thread_id)][:2] == [question.message_id, first.data.message_id]

    patch = PatchMessageRequest.builder().message_id(card.data.message_id)
    patched = await run(
        client.im.v1.message.patch,
        patch.request_body(PatchMessageRequestBody.builder().content(card_v1("done")).build()).build(),
    )
    assert patched.success()
    stored = feishu.message(card.data.message_id)
    assert stored.text == "done" and [r.op for r in stored.history] == ["create", "patch"]

    update_body = UpdateMessageRequestBody.builder().msg_type("text").content(text("hello, edited")).build()
    updated = await run(
        client.im.v1.message.update,
        UpdateMessageRequest.builder().message_id(created.data.message_id).request_body(update_body).build(),
    )
    assert updated.success() and updated.data.updated is True
    edited = feishu.message(created.data.message_id)
    assert edited.text == "hello, edited" and edited.edits == 1 and edited.updated

    wrong = await run(
        client.im.v1.message.patch,
        patch.request_body(PatchMessageRequestBody.builder().content(card_v1("x")).build()).build(),
    )
    assert wrong.success()  # patching the card again is fine; patching text is not:
    text_patch = PatchMessageRequest.builder().message_id(created.data.message_id)
    refused = await run(
        client.im.v1.message.patch,
        text_patch.request_body(PatchMessageRequestBody.builder().content(card_v1("x")).build()).build(),
    )
    assert refused.code == errors.INVALID_REQUEST and refused.raw.status_code == 400


async def test_async_methods_and_idempotent_uuid(feishu: FakeFeishu, client: lark.Client) -> None:
    await prime_tenant_token(client)
    alice = feishu.add_user("Alice")
    dm = feishu.p2p_chat(alice)
    by_open_id = CreateMessageRequest.builder().receive_id_type("open_id")
    body = CreateMessageRequestBody.builder().receive_id(alice.open_id).msg_type("text").content(text("hi")).uuid("u-1")
    first = await client.im.v1.message.acreate(by_open_id.request_body(body.build()).build())
    again = await client.im.v1.message.acreate(by_open_id.request_body(body.build()).build())
    assert first.success() and first.data.chat_id == dm.chat_id
    assert again.data.message_id == first.data.message_id and len(feishu.bot_messages(dm)) == 1

    threaded = await client.im.v1.message.areply(reply(first.data.message_id, "text", text("more"), in_thread=True))
    assert threaded.data.thread_id
    update_body = UpdateMessageRequestBody.builder().msg_type("post")
    post = {"zh_cn": {"title": "Plan", "content": [[{"tag": "text", "text": "step one"}]]}}
    updated = await client.im.v1.message.aupdate(
        UpdateMessageRequest.builder()
        .message_id(threaded.data.message_id)
        .request_body(update_body.content(json.dumps(post)).build())
        .build()
    )
    assert updated.success() and feishu.message(threaded.data.message_id).text == "Plan\nstep one"


async def test_content_rules(feishu: FakeFeishu, client: lark.Client) -> None:
    chat = feishu.add_chat()
    bare_card_id = await run(
        client.im.v1.message.create, create_message(chat.chat_id, "interactive", '{"card_id": "1"}')
    )
    assert bare_card_id.code == errors.CARD_PARSE_ERROR == 200621
    unknown_card = json.dumps({"type": "card", "data": {"card_id": "7300000000000000001"}})
    assert (
        await run(client.im.v1.message.create, create_message(chat.chat_id, "interactive", unknown_card))
    ).code == 230099
    too_long = await run(client.im.v1.message.create, create_text(chat.chat_id, "x" * (150 * 1024)))
    assert too_long.code == errors.CONTENT_TOO_LONG
    long_text = await run(client.im.v1.message.create, create_text(chat.chat_id, "x" * (100 * 1024)))
    assert long_text.success()  # text may be 150 KB; cards and posts only 30 KB:
    big_card = await run(
        client.im.v1.message.create, create_message(chat.chat_id, "interactive", card_v1("x" * 31_000))
    )
    assert big_card.code == errors.CONTENT_TOO_LONG
    flat_post = json.dumps({"title": "t", "content": [[{"tag": "text", "text": "x"}]]})
    assert (await run(client.im.v1.message.create, create_message(chat.chat_id, "post", flat_post))).code == 230001
    assert (await run(client.im.v1.message.create, create_text("oc_not_a_member", "hi"))).code == errors.BOT_NOT_IN_CHAT

    msg_id = (await run(client.im.v1.message.create, create_text(chat.chat_id, "v0"))).data.message_id
    request = UpdateMessageRequest.builder().message_id(msg_id)
    codes = []
    for i in range(21):
        body = UpdateMessageRequestBody.builder().msg_type("text").content(text(f"v{i + 1}")).build()
        codes.append((await run(client.im.v1.message.update, request.request_body(body).build())).code)
    assert codes == [0] * 20 + [errors.EDIT_LIMIT]


# -- CardKit ---------------------------------------------------------------------------
def card_content(card_id: str, element_id: str, content: str, sequence: int) -> ContentCardElementRequest:
    body = ContentCardElementRequestBody.builder().content(content).sequence(sequence).build()
    return ContentCardElementRequest.builder().card_id(card_id).element_id(element_id).request_body(body).build()


def card_settings(card_id: str, settings: dict[str, Any], sequence: int) -> SettingsCardRequest:
    body = SettingsCardRequestBody.builder().settings(json.dumps(settings)).sequence(sequence).build()
    return SettingsCardRequest.builder().card_id(card_id).request_body(body).build()


def create_card(card_json: str) -> CreateCardRequest:
    body = CreateCardRequestBody.builder().type("card_json").data(card_json).build()
    return CreateCardRequest.builder().request_body(body).build()


async def test_cardkit_streaming_card(feishu: FakeFeishu, client: lark.Client) -> None:
    chat = feishu.add_chat()
    alice = feishu.add_user("Alice")
    question = feishu.user_message(alice, chat=chat, text="explain", mentions=[feishu.bot]).message

    created = await run(client.cardkit.v1.card.create, create_card(streaming_card("answer")))
    card_id = created.data.card_id
    entity = feishu.card(card_id)
    assert created.success() and card_id.isdigit() and entity.streaming_mode

    entity_ref = json.dumps({"type": "card", "data": {"card_id": card_id}})
    sent = await run(client.im.v1.message.reply, reply(question.message_id, "interactive", entity_ref, in_thread=True))
    assert sent.success() and entity.message_ids == [sent.data.message_id]

    await prime_tenant_token(client)
    for seq, so_far in enumerate(["Hel", "Hello", "Hello, world"], start=1):
        resp = await client.cardkit.v1.card_element.acontent(card_content(card_id, "answer", so_far, seq))
        assert resp.success(), resp.msg
    stale = await run(client.cardkit.v1.card_element.content, card_content(card_id, "answer", "Hello, world!", 3))
    assert stale.code == errors.SEQUENCE_COMPARE_FAILED == 300317
    missing = await run(client.cardkit.v1.card_element.content, card_content(card_id, "nope", "x", 4))
    assert missing.code == errors.ELEMENT_NOT_FOUND and "nope" in missing.msg
    assert entity.history("answer") == ["Hel", "Hello", "Hello, world"] and entity.sequences == [1, 2, 3]
    assert feishu.message(sent.data.message_id).text == "Hello, world"  # the message shows the live entity

    off = await client.cardkit.v1.card.asettings(card_settings(card_id, {"config": {"streaming_mode": False}}, 4))
    assert off.success() and not entity.streaming_mode
    assert [(c.sequence, c.streaming_mode) for c in entity.settings_changes] == [(4, False)]
    late = await run(client.cardkit.v1.card_element.content, card_content(card_id, "answer", "more", 5))
    assert late.code == errors.STREAMING_CLOSED


async def test_a_card_takes_at_most_ten_calls_a_second(feishu: FakeFeishu, client: lark.Client) -> None:
    card_id = (await run(client.cardkit.v1.card.create, create_card(streaming_card("answer")))).data.card_id
    entity = feishu.card(card_id)
    await prime_tenant_token(client)
    first = await client.cardkit.v1.card_element.acontent(card_content(card_id, "answer", "x", 1))
    assert first.success() and len(entity.recent_calls) == 1
    entity.recent_calls = [time.monotonic()] * 10  # (as if ten calls had just been made)
    over = await client.cardkit.v1.card_element.acontent(card_content(card_id, "answer", "xx", 2))
    assert over.code == errors.RATE_LIMITED and over.raw.headers["x-ogw-ratelimit-reset"] == "1"
    assert entity.throttled == 1 and entity.history("answer") == ["x"]
    entity.recent_calls = [time.monotonic() - 1.1] * 10  # a second later
    later = await client.cardkit.v1.card_element.acontent(card_content(card_id, "answer", "xx", 2))
    assert later.success() and entity.history("answer") == ["x", "xx"]


async def test_cardkit_validation_and_stream_lifetime(feishu: FakeFeishu, client: lark.Client) -> None:
    v1 = await run(client.cardkit.v1.card.create, create_card(card_v1("not 2.0")))
    assert v1.code == errors.CARD_JSON_INVALID
    dup = await run(client.cardkit.v1.card.create, create_card(streaming_card("a", "a")))
    assert dup.code == errors.DUPLICATE_ELEMENT_ID

    feishu.stream_lifetime = -1  # Feishu closes streaming 10 minutes after it was opened
    card_id = (await run(client.cardkit.v1.card.create, create_card(streaming_card("answer")))).data.card_id
    first = await run(client.cardkit.v1.card_element.content, card_content(card_id, "answer", "x", 1))
    second = await run(client.cardkit.v1.card_element.content, card_content(card_id, "answer", "x", 2))
    assert (first.code, second.code) == (errors.STREAMING_TIMEOUT, errors.STREAMING_CLOSED)


# -- files -----------------------------------------------------------------------------
async def test_image_and_file_uploads(feishu: FakeFeishu, client: lark.Client) -> None:
    image_body = CreateImageRequestBody.builder().image_type("message").image(io.BytesIO(PNG)).build()
    image = await run(client.im.v1.image.create, CreateImageRequest.builder().request_body(image_body).build())
    assert image.success() and image.data.image_key.startswith("img_v3_")

    await prime_tenant_token(client)
    file_body = CreateFileRequestBody.builder().file_type("pdf").file_name("report.pdf").file(io.BytesIO(b"%PDF-1.4"))
    file = await client.im.v1.file.acreate(CreateFileRequest.builder().request_body(file_body.build()).build())
    assert file.success() and file.data.file_key.startswith("file_v3_")
    assert [(u.kind, u.data) for u in feishu.uploads.values()] == [("image", PNG), ("file", b"%PDF-1.4")]
    assert feishu.files[0].file_name == "report.pdf" and feishu.files[0].file_type == "pdf"

    empty_body = CreateFileRequestBody.builder().file_type("pdf").file_name("e.pdf").file(io.BytesIO(b"")).build()
    empty = await run(client.im.v1.file.create, CreateFileRequest.builder().request_body(empty_body).build())
    assert empty.code == errors.FILE_EMPTY

    chat = feishu.add_chat()
    sent = await run(
        client.im.v1.message.create,
        create_message(chat.chat_id, "image", json.dumps({"image_key": image.data.image_key})),
    )
    assert sent.success()
    own = (
        GetMessageResourceRequest.builder()
        .message_id(sent.data.message_id)
        .file_key(image.data.image_key)
        .type("image")
    )
    assert (await run(client.im.v1.message_resource.get, own.build())).file.read() == PNG


async def test_downloading_what_a_user_sent(feishu: FakeFeishu, client: lark.Client) -> None:
    alice = feishu.add_user("Alice")
    sent = feishu.user_message(alice, file=("notes é.txt", b"hello file"))
    file_key = json.loads(sent.message.content)["file_key"]
    request = GetMessageResourceRequest.builder().message_id(sent.message.message_id).file_key(file_key).type("file")

    resp = await run(client.im.v1.message_resource.get, request.build())
    assert resp.success() and resp.file.read() == b"hello file" and resp.file_name == "notes é.txt"

    await prime_tenant_token(client)
    aresp = await client.im.v1.message_resource.aget(request.build())
    assert aresp.file.read() == b"hello file"
    assert aresp.file_name is None  # async: lower-cased headers hide Content-Disposition from lark-oapi

    photo = feishu.user_message(alice, image=PNG)
    feishu.host_resource(photo.message.message_id, "img_extra", b"more", kind="image")
    image_key = json.loads(photo.message.content)["image_key"]
    as_image = GetMessageResourceRequest.builder().message_id(photo.message.message_id).type("image")
    assert (await run(client.im.v1.message_resource.get, as_image.file_key(image_key).build())).file.read() == PNG
    assert (await run(client.im.v1.message_resource.get, as_image.file_key("img_extra").build())).file.read() == b"more"

    unknown = (
        GetMessageResourceRequest.builder().message_id(sent.message.message_id).file_key("nope").type("file").build()
    )
    assert (await run(client.im.v1.message_resource.get, unknown)).code == errors.FILE_NOT_IN_MESSAGE
    aunknown = await client.im.v1.message_resource.aget(unknown)
    assert aunknown.code is None  # async: the JSON error body is not parsed either
    assert json.loads(aunknown.raw.content)["code"] == errors.FILE_NOT_IN_MESSAGE


# -- injected failures -------------------------------------------------------------------
async def test_card_table_limit_and_rate_limits(feishu: FakeFeishu, client: lark.Client) -> None:
    chat = feishu.add_chat()
    card = await run(client.im.v1.message.create, create_message(chat.chat_id, "interactive", card_v1("v1")))
    feishu.fail("im.v1.message.patch", Failure(400, code=errors.CARD_CONTENT_FAILED))
    patch = PatchMessageRequest.builder().message_id(card.data.message_id)
    patch = patch.request_body(PatchMessageRequestBody.builder().content(card_v1("| a |\n|---|")).build())
    failed = await run(client.im.v1.message.patch, patch.build())
    assert failed.code == 230099 and "11310" in failed.msg and "card table number over limit" in failed.msg
    assert feishu.message(card.data.message_id).patches == 0

    feishu.fail("im.v1.message.create", Failure(429, code=errors.RATE_LIMITED, retry_after=2))
    limited = await run(client.im.v1.message.create, create_text(chat.chat_id, "hi"))
    assert (limited.code, limited.raw.status_code) == (99991400, 429)
    assert limited.raw.headers["x-ogw-ratelimit-reset"] == "2"  # a plain dict: the exact (lower) case

    await prime_tenant_token(client)
    feishu.fail("cardkit.v1.card.create", Failure(400, code=errors.RATE_LIMITED, retry_after=0.2))
    alimited = await client.cardkit.v1.card.acreate(create_card(streaming_card()))
    assert (alimited.code, alimited.raw.status_code) == (99991400, 400)
    assert alimited.raw.headers["x-ogw-ratelimit-reset"] == "1"
    assert (await client.cardkit.v1.card.acreate(create_card(streaming_card()))).success()
    assert [c.code for c in feishu.called("cardkit.v1.card.create")] == [99991400, 0]


# -- long connection -----------------------------------------------------------------------
class Received:
    """What an SDK handler saw, shared between the SDK's thread and the test."""

    def __init__(self, fake: FakeFeishu) -> None:
        self.fake = fake
        self.events: list[Any] = []
        self.lock = threading.Lock()

    def add(self, event: Any) -> None:
        with self.lock:
            self.events.append(event)
        self.fake.notify()

    async def wait(self, count: int = 1) -> list[Any]:
        await self.fake.wait_until(lambda: len(self.events) >= count, 10, f"{count} handled event(s)")
        with self.lock:
            return list(self.events)


@pytest.fixture
async def ws_runner(feishu: FakeFeishu) -> AsyncIterator[Callable[[lark.EventDispatcherHandler], LarkWsThread]]:
    """Starts lark.ws.Client in its own thread + loop; stopped (off this loop) before the fake goes."""
    started: list[LarkWsThread] = []

    def start(handler: lark.EventDispatcherHandler) -> LarkWsThread:
        runner = LarkWsThread(feishu.app_id, feishu.app_secret, handler, feishu.url).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        await runner.astop()


def message_handler(received: Received, before: Callable[[P2ImMessageReceiveV1], None] | None = None) -> Any:
    def on_message(data: P2ImMessageReceiveV1) -> None:
        if before is not None:
            before(data)
        received.add(data)

    return lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(on_message).build()


async def test_long_connection_delivers_and_sees_the_ack(feishu: FakeFeishu, ws_runner: Any) -> None:
    test_loop = asyncio.get_running_loop()
    module_loop = ws_client_module.loop
    received = Received(feishu)
    runner = ws_runner(message_handler(received))
    conn = await feishu.wait_for_connection()
    assert feishu.called("callback.ws.endpoint")[0].params == {"AppID": feishu.app_id, "AppSecret": feishu.app_secret}
    await feishu.wait_for_call("ws.ping")  # the SDK pings at once; the pong carries the ClientConfig

    chat = feishu.add_chat("Team")
    alice, bob = feishu.add_user("Alice"), feishu.add_user("Bob")
    delivery = await feishu.say(alice, "please review", chat=chat, mentions=[feishu.bot, bob], mention_all=True)
    (event,) = await received.wait()
    await feishu.wait_for_ack(delivery)

    message = event.event.message
    assert event.header.event_id == delivery.event_id and event.header.app_id == feishu.app_id
    assert event.event.sender.sender_id.open_id == alice.open_id
    assert message.chat_type == "group" and message.chat_id == chat.chat_id
    assert json.loads(message.content)["text"] == "@_all @_user_1 @_user_2 please review"
    assert [(m.key, m.id.open_id, m.name) for m in message.mentions] == [
        ("@_user_1", feishu.bot.open_id, feishu.app_name),
        ("@_user_2", bob.open_id, "Bob"),
    ]
    assert feishu.acked_event_ids == [delivery.event_id] and delivery.pushes == 1
    assert delivery.attempts[0].conn_id == conn.conn_id
    ack = feishu.called("ws.ack")[0].params
    assert ack["code"] == 200 and ack["event_id"] == delivery.event_id and ack["biz_rt"] is not None

    # the SDK ran on its own loop in its own thread; this test's loop never ran its tasks
    assert runner.loop is not test_loop and ws_client_module.loop is runner.loop
    assert all("lark_oapi" not in repr(task.get_coro()) for task in asyncio.all_tasks(test_loop))
    await runner.astop()
    assert ws_client_module.loop is module_loop and runner.loop.is_closed() and runner.error is None


async def test_an_event_is_pushed_again_while_its_handler_is_slow(feishu: FakeFeishu, ws_runner: Any) -> None:
    release = threading.Event()
    calls: list[str] = []

    def slow_first(data: P2ImMessageReceiveV1) -> None:
        calls.append(data.header.event_id)
        if len(calls) == 1:
            release.wait(10)  # the SDK acks only after the handler returns: Feishu re-pushes meanwhile

    ws_runner(message_handler(Received(feishu), slow_first))
    await feishu.wait_for_connection()
    delivery = await feishu.say(feishu.add_user("Alice"), "hi")
    await feishu.wait_for_pushes(delivery, 2)  # after repush_after (0.5 s here, 3 s on Feishu)
    release.set()
    await feishu.wait_until(lambda: all(a.ack_code for a in delivery.attempts), 10, "both acks")

    assert calls == [delivery.event_id] * 2  # the same event_id twice: bots deduplicate on it
    assert [a.ack_code for a in delivery.attempts] == [200, 200] and delivery.acked
    assert delivery.attempts[0].acked_at > delivery.attempts[1].sent_at  # the first ack came late
    assert delivery.attempts[0].message_id != delivery.attempts[1].message_id


async def test_an_event_whose_handler_raised_is_pushed_again(feishu: FakeFeishu, ws_runner: Any) -> None:
    calls: list[str] = []

    def failing_first(data: P2ImMessageReceiveV1) -> None:
        calls.append(data.header.event_id)
        if len(calls) == 1:
            raise RuntimeError("handler failed")  # the SDK answers the frame with code 500

    ws_runner(message_handler(Received(feishu), failing_first))
    await feishu.wait_for_connection()
    delivery = await feishu.wait_for_ack(await feishu.say(feishu.add_user("Alice"), "hi"))
    assert [a.ack_code for a in delivery.attempts] == [500, 200] and calls == [delivery.event_id] * 2
    assert feishu.acked_event_ids == [delivery.event_id]


async def test_pushes_give_up_after_max_repushes(feishu: FakeFeishu, ws_runner: Any) -> None:
    feishu.max_repushes = 1
    ws_runner(lark.EventDispatcherHandler.builder("", "").build())  # no handler: the SDK answers 500
    await feishu.wait_for_connection()
    delivery = await feishu.say(feishu.add_user("Alice"), "anyone?")
    await feishu.wait_until(lambda: delivery.gave_up, 10, "the fake to give up")
    assert [a.ack_code for a in delivery.attempts] == [500, 500] and feishu.acked_event_ids == []


@pytest.mark.parametrize("abrupt", [False, True])
async def test_dropped_connection_reconnects(feishu: FakeFeishu, ws_runner: Any, abrupt: bool) -> None:
    received = Received(feishu)
    ws_runner(message_handler(received))
    first = await feishu.wait_for_connection()
    await feishu.drop_connection(first, abrupt=abrupt)
    second = await feishu.wait_for_connection(total=2)
    assert second.conn_id != first.conn_id and len(feishu.called("callback.ws.endpoint")) == 2

    delivery = await feishu.say(feishu.add_user("Alice"), "still there?")
    await feishu.wait_for_ack(delivery)
    assert delivery.attempts[-1].conn_id == second.conn_id and len(await received.wait()) == 1


async def test_card_action_and_split_payload_over_long_connection(feishu: FakeFeishu, ws_runner: Any) -> None:
    received = Received(feishu)
    pressed: list[P2CardActionTrigger] = []

    def on_press(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        pressed.append(data)
        feishu.notify()
        return P2CardActionTriggerResponse({"toast": {"type": "success", "content": "approved"}})

    handler = (
        lark.EventDispatcherHandler.builder("", "")
        .register_p2_im_message_receive_v1(received.add)
        .register_p2_card_action_trigger(on_press)
        .build()
    )
    ws_runner(handler)
    await feishu.wait_for_connection()
    alice = feishu.add_user("Alice")
    chat = feishu.add_chat()

    inbound = feishu.user_message(alice, chat=chat, post=[[{"tag": "text", "text": "a long post " * 40}]], title="T")
    split = await feishu.push(inbound.event, parts=3)
    (event,) = await received.wait()
    assert json.loads(event.event.message.content)["title"] == "T"
    assert feishu.called("ws.push")[0].params["event_id"] == split.event_id
    await feishu.wait_for_ack(split)

    card = feishu.message(feishu.user_message(alice, chat=chat, text="x").message.message_id)
    delivery = await feishu.press(alice, card, {"action": "approve", "id": 7})
    await feishu.wait_for_ack(delivery)
    assert delivery.response == {"toast": {"type": "success", "content": "approved"}}
    press = pressed[0].event
    assert press.action.value == {"action": "approve", "id": 7} and press.operator.open_id == alice.open_id
    assert press.context.open_message_id == card.message_id


# -- HTTP callbacks --------------------------------------------------------------------------
def callback_handler(feishu: FakeFeishu, *, encrypted: bool, seen: list[Any]) -> lark.EventDispatcherHandler:
    key = feishu.encrypt_key if encrypted else ""
    return (
        lark.EventDispatcherHandler.builder(key, feishu.verification_token)
        .register_p2_im_message_receive_v1(seen.append)
        .build()
    )


@pytest.mark.parametrize("encrypted", [False, True])
async def test_callbacks_accepted_by_lark_dispatcher(feishu: FakeFeishu, encrypted: bool) -> None:
    seen: list[Any] = []
    handler = callback_handler(feishu, encrypted=encrypted, seen=seen)
    key = feishu.encrypt_key if encrypted else None
    alice = feishu.add_user("Alice")
    root = feishu.user_message(alice, chat=feishu.add_chat(), text="root").message
    inbound = feishu.user_message(alice, reply_to=root, in_thread=True, text="in a thread")

    answer = handler.do(callbacks.build(inbound.event, encrypt_key=key).raw_request())
    assert answer.status_code == 200 and json.loads(answer.content) == {"msg": "success"}
    message = seen[0].event.message
    assert (message.root_id, message.parent_id, message.thread_id) == (root.message_id, root.message_id, root.thread_id)

    challenge = feishu.url_verification("c-123")
    verified = handler.do(callbacks.build(challenge, encrypt_key=key).raw_request())
    assert verified.status_code == 200 and json.loads(verified.content) == {"challenge": "c-123"}

    forged = handler.do(callbacks.build(inbound.event, encrypt_key=key, forge=True).raw_request())
    assert forged.status_code == 500 and len(seen) == 1  # 500, not 4xx, for a bad signature / token

    stale = handler.do(callbacks.build(inbound.event, encrypt_key=key, stale=True).raw_request())
    assert stale.status_code == 200 and len(seen) == 2  # lark-oapi never checks the timestamp's age


async def test_user_message_events_as_lark_parses_them(feishu: FakeFeishu) -> None:
    seen: list[P2ImMessageReceiveV1] = []
    handler = callback_handler(feishu, encrypted=False, seen=seen)
    alice, bob = feishu.add_user("Alice"), feishu.add_user("Bob")
    group = feishu.add_chat()
    bodies = [
        feishu.user_message(alice, text="hi").event,
        feishu.user_message(
            alice, chat=group, post=[[{"tag": "text", "text": "see"}]], title="T", mentions=[bob]
        ).event,
        feishu.user_message(alice, chat=group, image=PNG).event,
    ]
    for body in bodies:
        assert handler.do(callbacks.build(body).raw_request()).status_code == 200
    dm, post, image = (event.event.message for event in seen)

    assert dm.chat_type == "p2p" and dm.chat_id == feishu.p2p_chat(alice).chat_id and dm.mentions is None
    assert post.chat_type == "group" and post.message_type == "post"
    assert json.loads(post.content) == {
        "title": "T",
        "content": [[{"tag": "at", "user_id": "@_user_1", "user_name": "Bob"}], [{"tag": "text", "text": "see"}]],
    }
    assert post.mentions[0].id.open_id == bob.open_id
    assert image.message_type == "image" and json.loads(image.content)["image_key"].startswith("img_v3_")
    assert seen[0].event.sender.sender_id.user_id == alice.user_id and seen[0].header.tenant_key == feishu.tenant_key


async def test_signature_headers_are_read_case_sensitively(feishu: FakeFeishu) -> None:
    seen: list[Any] = []
    handler = callback_handler(feishu, encrypted=True, seen=seen)
    event = feishu.user_message(feishu.add_user("Alice"), text="hi").event
    lowered = callbacks.build(event, encrypt_key=feishu.encrypt_key, lowercase_headers=True)
    assert callbacks.SIGNATURE not in lowered.headers and "x-lark-signature" in lowered.headers
    assert handler.do(lowered.raw_request()).status_code == 500 and seen == []  # X-Lark-* looked up verbatim
    normalised = {callbacks.SIGNATURE if k == "x-lark-signature" else k: v for k, v in lowered.headers.items()}
    normalised = {
        {h.lower(): h for h in (callbacks.TIMESTAMP, callbacks.NONCE, callbacks.SIGNATURE)}.get(k, k): v
        for k, v in normalised.items()
    }
    fixed = callbacks.CallbackRequest(normalised, lowered.body)
    assert handler.do(fixed.raw_request()).status_code == 200 and len(seen) == 1

    envelope = json.loads(lowered.body)
    assert set(envelope) == {"encrypt"}
    assert AESCipher(feishu.encrypt_key).decrypt_str(envelope["encrypt"]) == callbacks.dumps(event).decode()
    assert callbacks.decrypt(envelope["encrypt"], feishu.encrypt_key) == callbacks.dumps(event)


async def test_post_callback_to_a_bot_endpoint(feishu: FakeFeishu) -> None:
    seen: list[Any] = []
    pressed: list[Any] = []
    handler = (
        lark.EventDispatcherHandler.builder(feishu.encrypt_key, feishu.verification_token)
        .register_p2_im_message_receive_v1(seen.append)
        .register_p2_card_action_trigger(lambda data: pressed.append(data) or P2CardActionTriggerResponse({}))
        .build()
    )

    async def endpoint(request: web.Request) -> web.Response:  # what a bot's aiohttp route does
        raw = lark.RawRequest()
        raw.uri, raw.body = request.path, await request.read()
        raw.headers = {k: v for k, v in request.headers.items()}
        answer = handler.do(raw)
        return web.Response(status=answer.status_code, body=answer.content, content_type="application/json")

    app = web.Application()
    app.router.add_post("/feishu/events", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/feishu/events"  # type: ignore[union-attr]
    try:
        alice = feishu.add_user("Alice")
        inbound = feishu.user_message(alice, text="hello")
        ok = await feishu.post_callback(url, inbound.event, encrypt_key=feishu.encrypt_key)
        assert ok.status == 200 and seen[0].header.event_id == inbound.event_id

        challenge = await feishu.post_callback(url, feishu.url_verification("abc"), encrypt_key=feishu.encrypt_key)
        assert challenge.json() == {"challenge": "abc"}

        press = feishu.card_action(alice, inbound.message, {"approve": True})
        assert (await feishu.post_callback(url, press, encrypt_key=feishu.encrypt_key)).status == 200
        assert pressed[0].event.action.value == {"approve": True}

        forged = await feishu.post_callback(url, inbound.event, encrypt_key=feishu.encrypt_key, forge=True)
        wrong_token = await feishu.post_callback(
            url, inbound.event, encrypt_key=feishu.encrypt_key, verification_token="x"
        )
        assert (forged.status, wrong_token.status) == (500, 500) and len(seen) == 1
        assert [c.params["forge"] for c in feishu.called("callback.post")] == [False, False, False, True, False]
    finally:
        await runner.cleanup()
