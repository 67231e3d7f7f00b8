"""The Feishu Request URL's checks (``adapters.feishu.callback``), request by request.

The endpoint runs on 127.0.0.1 with a recording handler in place of the bot; requests are
built the way Feishu builds them (:mod:`tests.feishu.callbacks`, written from lark-oapi's
wire format, not from the adapter). Whatever is refused must never reach the handler.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from adapters.feishu.callback import MAX_REQUEST_BYTES, CallbackServer, CallbackVerifier, Refused
from adapters.feishu.config import FeishuConfig
from core import ConfigError

from . import callbacks
from .events import App, envelope, url_verification


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEY = "test-encrypt-key"
TOKEN = "test-verification-token"
APP = App("cli_test", "tenant", TOKEN)
NOW = 1_700_000_000.0


def event(text: str = "hello") -> dict[str, Any]:
    return envelope(APP, "im.message.receive_v1", {"message": {"content": json.dumps({"text": text})}})


class Endpoint:
    def __init__(self, server: CallbackServer) -> None:
        self.server = server
        self.received: list[dict[str, Any]] = []
        self.answer: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.listener.port}{self.server.config.path}"

    async def on_callback(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.received.append(body)
        return self.answer

    async def post(self, body: dict[str, Any], **kwargs: Any) -> callbacks.CallbackResult:
        return await callbacks.post(self.url, callbacks.build(body, **kwargs))

    async def send(self, raw: bytes, headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url, data=raw, headers=headers) as response:
                return response.status


@pytest.fixture
async def make_endpoint() -> AsyncIterator[Callable[..., Awaitable[Endpoint]]]:
    servers: list[CallbackServer] = []

    async def make(**settings: Any) -> Endpoint:
        base = {"app_id": "cli_test", "app_secret": "s", "mode": "callback", "host": "127.0.0.1", "port": 0}
        base.update({"encrypt_key": KEY, "verification_token": TOKEN})
        base.update(settings)
        endpoint = Endpoint(None)  # type: ignore[arg-type]
        server = CallbackServer(FeishuConfig.model_validate(base), endpoint.on_callback)
        endpoint.server = server
        await server.start()
        servers.append(server)
        return endpoint

    yield make
    for server in servers:
        await server.stop()


# -- with an encrypt key: signed and encrypted ----------------------------------------------------
async def test_a_signed_encrypted_event_reaches_the_bot_decrypted(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    body = event("hi there")
    result = await endpoint.post(body, encrypt_key=KEY)
    assert result.status == 200 and result.json() == {"msg": "success"}
    assert endpoint.received == [body]
    lowered = await endpoint.post(event("lower"), encrypt_key=KEY, lowercase_headers=True)
    assert lowered.status == 200 and len(endpoint.received) == 2  # header names are case-insensitive


async def test_a_card_actions_answer_is_the_response(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    endpoint.answer = {"toast": {"type": "info", "content": "Approved"}}
    result = await endpoint.post(envelope(APP, "card.action.trigger", {"action": {"value": {}}}), encrypt_key=KEY)
    assert result.status == 200 and result.json() == {"toast": {"type": "info", "content": "Approved"}}


async def test_forged_stale_or_wrongly_addressed_requests_are_401_and_run_nothing(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    refused = [
        await endpoint.post(event(), encrypt_key=KEY, forge=True),  # signed with another key
        await endpoint.post(event(), encrypt_key=KEY, stale=True),  # an hour old
        await endpoint.post(event(), encrypt_key=KEY, timestamp=int(time.time()) + 3600),  # an hour ahead
        await endpoint.post(event(), encrypt_key=KEY, verification_token="not-it"),  # another app's token
    ]
    assert [r.status for r in refused] == [401, 401, 401, 401]
    assert all(r.json()["msg"] for r in refused)  # a reason, for whoever reads the logs
    assert endpoint.received == []


async def test_a_signature_without_its_timestamp_or_nonce_is_401(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    for missing in (callbacks.TIMESTAMP, callbacks.NONCE):
        request = callbacks.build(event(), encrypt_key=KEY)
        headers = {k: v for k, v in request.headers.items() if k != missing}
        assert await endpoint.send(request.body, headers) == 401, missing
    assert endpoint.received == []


async def test_an_unsigned_event_is_401_but_the_unsigned_challenge_is_answered(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    request = callbacks.build(event(), encrypt_key=KEY)
    unsigned = {k: v for k, v in request.headers.items() if k != callbacks.SIGNATURE}
    assert await endpoint.send(request.body, unsigned) == 401
    challenge = callbacks.build(url_verification(APP, "c-7"), encrypt_key=KEY)
    headers = {k: v for k, v in challenge.headers.items() if k != callbacks.SIGNATURE}
    async with aiohttp.ClientSession() as session:
        async with session.post(endpoint.url, data=challenge.body, headers=headers) as response:
            assert response.status == 200 and await response.json() == {"challenge": "c-7"}
    wrong = await endpoint.post(url_verification(APP, "c-8"), encrypt_key=KEY, verification_token="not-it")
    assert wrong.status == 401  # the challenge still carries the token
    assert endpoint.received == []


async def test_a_plain_challenge_is_answered_with_an_encrypt_key_set_when_its_token_is_right(
    make_endpoint: Any,
) -> None:
    endpoint = await make_endpoint()
    answered = await endpoint.post(url_verification(APP, "c-9"))  # neither encrypted nor signed
    assert answered.status == 200 and answered.json() == {"challenge": "c-9"}
    wrong = await endpoint.post(url_verification(APP, "c-10"), verification_token="not-it")
    assert wrong.status == 401
    assert endpoint.received == []


async def test_bodies_that_are_not_what_feishu_sends_are_400(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    plain = await endpoint.post(event())  # neither encrypted nor signed, though a key is set
    assert plain.status == 400
    for raw in (b"{not json", b"[1, 2]", json.dumps({"encrypt": "bm90IGNpcGhlcnRleHQ="}).encode()):
        ts, nonce = str(int(time.time())), "n-1"
        headers = {
            callbacks.TIMESTAMP: ts,
            callbacks.NONCE: nonce,
            callbacks.SIGNATURE: callbacks.sign(ts, nonce, KEY, raw),
            "Content-Type": "application/json",
        }
        assert await endpoint.send(raw, headers) == 400, raw
    not_an_object = callbacks.build({}, encrypt_key=KEY)
    body = json.dumps({"encrypt": callbacks.encrypt(b"[1]", KEY)}).encode()
    ts, nonce = not_an_object.headers[callbacks.TIMESTAMP], not_an_object.headers[callbacks.NONCE]
    headers = {**not_an_object.headers, callbacks.SIGNATURE: callbacks.sign(ts, nonce, KEY, body)}
    assert await endpoint.send(body, headers) == 400
    assert endpoint.received == []


async def test_an_oversized_body_is_413(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    huge = event("x" * (MAX_REQUEST_BYTES + 10))
    assert (await endpoint.post(huge, encrypt_key=KEY)).status == 413
    small = event("x" * (MAX_REQUEST_BYTES // 2))
    assert (await endpoint.post(small, encrypt_key=KEY)).status == 200
    assert len(endpoint.received) == 1


async def test_the_url_verification_challenge_is_answered_not_handed_on(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    result = await endpoint.post(url_verification(APP, "c-42"), encrypt_key=KEY)
    assert result.status == 200 and result.json() == {"challenge": "c-42"}
    assert endpoint.received == []


async def test_the_health_probe_answers(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{endpoint.server.listener.port}/healthz") as response:
            assert response.status == 200 and await response.json() == {"ok": True}


# -- without an encrypt key: the verification token ------------------------------------------------
async def test_without_an_encrypt_key_the_token_authenticates_plain_events(make_endpoint: Any) -> None:
    endpoint = await make_endpoint(encrypt_key="")
    body = event("plain")
    assert (await endpoint.post(body)).status == 200
    assert endpoint.received == [body]
    forged = await endpoint.post(event(), forge=True)  # another token
    no_token = event()
    del no_token["header"]["token"]
    assert (forged.status, (await endpoint.post(no_token)).status) == (401, 401)
    flat = {"token": TOKEN, "type": "event_callback", "event": {}}  # the old flat shape: its own token
    assert (await endpoint.post(flat)).status == 200
    header_without_token = {"header": None, "token": TOKEN}  # a header wins over a top-level token
    assert (await endpoint.post(header_without_token)).status == 401
    assert (await endpoint.post({"header": {"token": 42}})).status == 401
    encrypted = await endpoint.post(event(), encrypt_key=KEY)
    assert encrypted.status == 400  # nothing to decrypt it with
    assert endpoint.received == [body, flat]


async def test_without_an_encrypt_key_a_timestamp_out_of_the_window_is_401(make_endpoint: Any) -> None:
    endpoint = await make_endpoint(encrypt_key="")
    assert (await endpoint.post(event(), stale=True)).status == 401
    request = callbacks.build(event())
    assert await endpoint.send(request.body, {**request.headers, callbacks.TIMESTAMP: "soon"}) == 401
    untimed = {k: v for k, v in request.headers.items() if k != callbacks.TIMESTAMP}
    assert await endpoint.send(request.body, untimed) == 200  # no timestamp: only the token to check
    assert len(endpoint.received) == 1
    challenge = await endpoint.post(url_verification(APP, "c-1"))
    assert challenge.json() == {"challenge": "c-1"}


# -- the verifier on its own: exact boundaries --------------------------------------------------------
def signed(body: dict[str, Any], ts: float, *, key: str = KEY, nonce: str = "n-1") -> tuple[dict[str, str], bytes]:
    raw = json.dumps({"encrypt": callbacks.encrypt(callbacks.dumps(body), key)}).encode()
    stamp = str(int(ts))
    return {
        callbacks.TIMESTAMP: stamp,
        callbacks.NONCE: nonce,
        callbacks.SIGNATURE: callbacks.sign(stamp, nonce, key, raw),
    }, raw


def test_a_timestamp_exactly_at_the_allowed_age_passes_and_one_second_past_it_does_not() -> None:
    verifier = CallbackVerifier(KEY, TOKEN, max_age=300, clock=lambda: NOW)
    body = event()
    for offset in (-300, 300, 0):
        assert verifier.open(*signed(body, NOW + offset)) == body
    for offset in (-301, 301):
        with pytest.raises(Refused) as info:
            verifier.open(*signed(body, NOW + offset))
        assert info.value.status == 401
    plain = CallbackVerifier(None, TOKEN, max_age=60, clock=lambda: NOW)
    raw = callbacks.dumps(body)
    assert plain.open({callbacks.TIMESTAMP: str(int(NOW - 60))}, raw) == body
    with pytest.raises(Refused):
        plain.open({callbacks.TIMESTAMP: str(int(NOW + 61))}, raw)


def test_plain_header_dicts_are_read_whatever_their_case() -> None:
    verifier = CallbackVerifier(KEY, TOKEN, clock=lambda: NOW)
    body = event()
    headers, raw = signed(body, NOW)
    assert verifier.open({k.lower(): v for k, v in headers.items()}, raw) == body
    upper = {k.upper(): v for k, v in headers.items()}
    upper[callbacks.SIGNATURE.upper()] = " " + headers[callbacks.SIGNATURE].upper() + " "
    assert verifier.open(upper, raw)["header"]["token"] == TOKEN  # hex in any case, spaces around
    signature = headers[callbacks.SIGNATURE]
    wrong = signature[:-1] + ("1" if signature.endswith("0") else "0")  # the body's IV is random: so is the signature
    with pytest.raises(Refused) as info:
        verifier.open({**headers, callbacks.SIGNATURE: wrong}, raw)
    assert info.value.status == 401


def test_a_signature_covers_the_nonce_the_timestamp_and_the_exact_body() -> None:
    verifier = CallbackVerifier(KEY, TOKEN, clock=lambda: NOW)
    headers, raw = signed(event(), NOW)
    for changed in (
        {**headers, callbacks.NONCE: "n-2"},
        {**headers, callbacks.TIMESTAMP: str(int(NOW) + 1)},
    ):
        with pytest.raises(Refused):
            verifier.open(changed, raw)
    with pytest.raises(Refused):
        verifier.open(headers, raw + b" ")
    other_key, raw2 = signed(event(), NOW, key="another-key")
    with pytest.raises(Refused):
        CallbackVerifier(KEY, None, clock=lambda: NOW).open(other_key, raw2)


def test_with_only_an_encrypt_key_the_signature_is_what_authenticates() -> None:
    verifier = CallbackVerifier(KEY, None, clock=lambda: NOW)
    body = event()
    body["header"]["token"] = "whatever"  # no verification token configured: not checked
    assert verifier.open(*signed(body, NOW)) == body


# -- what each refusal says, and the server's own edges -------------------------------------------
def refusal(verifier: CallbackVerifier, headers: dict[str, str], raw: bytes) -> tuple[int, str]:
    with pytest.raises(Refused) as info:
        verifier.open(headers, raw)
    assert str(info.value) == info.value.reason
    return info.value.status, info.value.reason


def test_each_refusal_names_its_reason() -> None:
    keyed = CallbackVerifier(KEY, TOKEN, clock=lambda: NOW)
    plain = CallbackVerifier(None, TOKEN, clock=lambda: NOW)
    headers, raw = signed(event(), NOW)
    stale_headers, stale_raw = signed(event(), NOW - 3600)
    unsigned = {k: v for k, v in headers.items() if k != callbacks.SIGNATURE}
    no_nonce = {k: v for k, v in headers.items() if k != callbacks.NONCE}

    def signed_raw(raw: bytes) -> tuple[dict[str, str], bytes]:
        stamp = str(int(NOW))
        return {
            callbacks.TIMESTAMP: stamp,
            callbacks.NONCE: "n-1",
            callbacks.SIGNATURE: callbacks.sign(stamp, "n-1", KEY, raw),
        }, raw

    a_plain_body = "a plain body, but an encrypt_key is configured (Feishu encrypts every request)"
    a_list = json.dumps({"encrypt": callbacks.encrypt(b"[1]", KEY)}).encode()
    cases = [
        (plain, ({}, b"{not json"), (400, "the body is not JSON")),
        (plain, ({}, b"[1]"), (400, "the body is not a JSON object")),
        (plain, ({}, callbacks.dumps(callbacks.set_token(event(), "x"))), (401, "wrong or missing verification token")),
        (plain, ({callbacks.TIMESTAMP: "soon"}, callbacks.dumps(event())), (401, "unreadable timestamp")),
        (plain, ({}, raw), (400, "an encrypted body, but no encrypt_key is configured")),
        (keyed, (unsigned, raw), (401, "missing signature")),
        (keyed, (no_nonce, raw), (401, "signature without timestamp / nonce")),
        (keyed, ({**headers, callbacks.SIGNATURE: "0" * 64}, raw), (401, "invalid signature")),
        (keyed, (stale_headers, stale_raw), (401, "stale request (timestamp outside the allowed window)")),
        (keyed, signed_raw(b"{}"), (400, a_plain_body)),
        (keyed, signed_raw(b'{"encrypt": 123}'), (400, a_plain_body)),
        (keyed, signed_raw(b'{"encrypt": ""}'), (400, a_plain_body)),
        (
            keyed,
            signed_raw(b'{"encrypt": "bm90IGNpcGhlcnRleHQ="}'),
            (400, "the body could not be decrypted with the encrypt_key"),
        ),
        (keyed, signed_raw(a_list), (400, "the decrypted body is not a JSON object")),
    ]
    for verifier, (case_headers, case_raw), expected in cases:
        assert refusal(verifier, case_headers, case_raw) == expected, expected


def test_the_default_window_is_five_minutes() -> None:
    verifier = CallbackVerifier(None, TOKEN, clock=lambda: NOW)
    raw = callbacks.dumps(event())
    assert verifier.open({callbacks.TIMESTAMP: str(int(NOW - 300))}, raw)["header"]["token"] == TOKEN
    assert refusal(verifier, {callbacks.TIMESTAMP: str(int(NOW - 301))}, raw)[0] == 401


async def test_the_server_uses_the_configured_window(make_endpoint: Any) -> None:
    endpoint = await make_endpoint(max_request_age=60)
    assert (await endpoint.post(event(), encrypt_key=KEY, timestamp=int(time.time()) - 120)).status == 401
    assert (await endpoint.post(event(), encrypt_key=KEY, timestamp=int(time.time()) - 30)).status == 200


async def test_with_only_an_encrypt_key_the_server_starts_and_checks_signatures(make_endpoint: Any) -> None:
    endpoint = await make_endpoint(verification_token=None)
    assert (await endpoint.post(event("signed"), encrypt_key=KEY)).status == 200
    assert (await endpoint.post(event("forged"), encrypt_key=KEY, forge=True)).status == 401
    assert len(endpoint.received) == 1


async def test_the_size_limit_is_inclusive_and_the_413_says_so(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()
    too_large = await callbacks.post(endpoint.url, callbacks.CallbackRequest({}, b"x" * (MAX_REQUEST_BYTES + 1), {}))
    assert too_large.status == 413 and too_large.json() == {"msg": "request body too large"}
    at_limit = await endpoint.send(b"x" * MAX_REQUEST_BYTES, {"Content-Type": "application/json"})
    assert at_limit == 400  # read, and refused for what it is (not JSON), not for its size


async def test_a_challenge_without_its_value_is_answered_empty(make_endpoint: Any) -> None:
    endpoint = await make_endpoint(encrypt_key="")
    result = await endpoint.post({"type": "url_verification", "token": TOKEN})
    assert result.status == 200 and result.json() == {"challenge": ""}


async def test_the_server_listens_where_configured_and_stops_listening() -> None:
    port = free_port()
    config = FeishuConfig.model_validate(
        {"app_id": "cli_test", "app_secret": "s", "mode": "callback", "host": "127.0.0.1", "port": port}
        | {"encrypt_key": KEY, "verification_token": TOKEN}
    )
    server = CallbackServer(config, lambda body: None)  # type: ignore[arg-type, return-value]
    assert server.listener.port is None
    await server.stop()  # before start: nothing to stop
    assert await server.start() == port == server.listener.port
    assert [a[:2] for a in server.listener.addresses] == [("127.0.0.1", port)]
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/healthz")


@pytest.mark.parametrize(("where", "key"), [("bots.feishu", "bots.feishu.mode"), (None, "mode")])
async def test_callback_mode_without_aiohttp_is_a_config_error_naming_the_mode(
    where: str | None, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = FeishuConfig.model_validate(
        {"app_id": "cli_test", "app_secret": "s", "mode": "callback"} | {"encrypt_key": KEY}
    )
    placed = {} if where is None else {"where": where}
    server = CallbackServer(config, lambda body: None, **placed)  # type: ignore[arg-type, return-value]
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if it were not installed
    with pytest.raises(ConfigError) as info:
        await server.start()
    assert info.value.key == key
    assert str(info.value) == f"{key}: callback mode needs aiohttp (pip install aiohttp), or use mode: long_connection"


async def test_a_body_without_a_length_is_cut_off_at_the_limit(make_endpoint: Any) -> None:
    endpoint = await make_endpoint()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows while reading
        for _ in range(2):
            yield b"x" * MAX_REQUEST_BYTES

    async with aiohttp.ClientSession() as session:
        async with session.post(endpoint.url, data=chunks(), headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413
    assert endpoint.received == []


async def test_the_server_leaves_signals_to_the_bot_and_logs_no_requests(
    make_endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # the bot's own graceful shutdown
    try:
        endpoint = await make_endpoint()
        with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
            assert (await endpoint.post(event("logged?"), encrypt_key=KEY)).status == 200
        await endpoint.server.stop()
        assert [r for r in caplog.records if r.name == "aiohttp.access"] == []
    finally:
        assert loop.remove_signal_handler(signal.SIGTERM)  # neither replaced nor removed by the server
