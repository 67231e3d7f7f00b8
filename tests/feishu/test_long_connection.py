"""The adapter's runner of lark.ws.Client: its own thread and loop, several at once, acks at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import lark_oapi.ws.client as ws_client_module
import pytest

from adapters.feishu.long_connection import LongConnection, ThreadLoops
from core import ConfigError
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import eventually

from .conftest import BotFactory
from .events import envelope
from .fake_feishu import FakeFeishu


async def test_two_long_connections_run_side_by_side_off_the_bot_loop() -> None:
    """One process, two apps (say a Feishu and a Lark bot): each client runs on a loop of its own."""
    async with FakeFeishu() as first, FakeFeishu() as second:
        seen: dict[str, list[dict[str, Any]]] = {first.app_id: [], second.app_id: []}
        threads: dict[str, str] = {}

        def receiver(app_id: str) -> Any:
            def on_payload(body: dict[str, Any]) -> None:
                seen[app_id].append(body)
                threads[app_id] = threading.current_thread().name

            return on_payload

        connections = [LongConnection(f.app_id, f.app_secret, f.url, receiver(f.app_id)) for f in (first, second)]
        try:
            for conn in connections:
                conn.start()
            for conn in connections:
                assert await conn.wait_connected(10)
            assert isinstance(ws_client_module.loop, ThreadLoops)
            assert connections[0].loop is not connections[1].loop
            deliveries = [await fake.say(fake.add_user("Alice"), f"to {fake.app_id}") for fake in (first, second)]
            await first.wait_for_ack(deliveries[0])
            await second.wait_for_ack(deliveries[1])
            for fake, delivery in zip((first, second), deliveries, strict=True):
                [body] = seen[fake.app_id]
                assert body["header"]["event_id"] == delivery.event_id and delivery.pushes == 1
                assert threads[fake.app_id] == "feishu-long-connection"
            unknown = await first.push(envelope(first.app, "im.chat.disbanded_v1", {}))
            assert (await first.wait_for_ack(unknown)).attempts[0].ack_code == 200
            loop = asyncio.get_running_loop()
            assert all("lark_oapi" not in repr(task.get_coro()) for task in asyncio.all_tasks(loop))
        finally:
            for conn in connections:
                await asyncio.to_thread(conn.stop)
        assert not any(conn.alive for conn in connections)
        assert all(conn.loop is not None and conn.loop.is_closed() for conn in connections)
        await first.wait_until(lambda: not first.open_connections(), 5, "the connection to close")


async def test_wrong_credentials_surface_from_the_thread(feishu: FakeFeishu) -> None:
    from lark_oapi.ws.exception import ClientException

    conn = LongConnection(feishu.app_id, "not-the-secret", feishu.url, lambda body: None)
    conn.start()
    try:
        try:
            await conn.wait_connected(10)
        except ClientException as exc:
            assert exc.code == 10014
        else:
            raise AssertionError("the SDK accepted a wrong secret")
    finally:
        await asyncio.to_thread(conn.stop)


async def test_a_connection_lost_for_good_ends_serve_with_the_key_to_fix(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    """The app secret rotated while the bot runs: lark-oapi's reconnect is refused inside its own task;
    the bot does not go on deaf, serve() ends with one error naming the key."""
    bot = await make_bot()
    fake, adapter = bot.fake, bot.bot.adapter
    serving = asyncio.ensure_future(adapter.serve())
    try:
        connection = await fake.wait_for_connection()
        await asyncio.sleep(0)
        assert not serving.done()
        fake.app_secret = "rotated-in-the-console"
        await fake.drop_connection(connection, abrupt=True)
        with pytest.raises(ConfigError) as info:
            await asyncio.wait_for(serving, 30)
        assert str(info.value).startswith("bots.feishu.app_secret: Feishu refused the long connection")
        ws = adapter.ws
        assert ws is not None
        await eventually(lambda: not ws.alive, what="the long connection's thread to end")
    finally:
        serving.cancel()


async def test_a_slow_button_press_holds_up_no_other_event(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A press's answer (its toast) is awaited off the SDK's loop: a message arriving meanwhile is acked
    while the press is still being answered (Feishu pushes again what is not acked within 3 s)."""
    bot = await make_bot()
    fake, adapter, alice = bot.fake, bot.bot.adapter, bot.people["alice"]
    release = asyncio.Event()
    pressed = asyncio.Event()

    async def slow_answer(body: dict[str, Any]) -> dict[str, Any]:
        pressed.set()
        await release.wait()  # e.g. the approval lives on another instance, behind a slow Redis
        return {"toast": {"type": "info", "content": "noted"}}

    monkeypatch.setattr(adapter, "_on_card_action", slow_answer)
    card = fake.user_message(alice, text="a card to press").message
    press = await fake.press(alice, card, {"anything": 1})
    await asyncio.wait_for(pressed.wait(), 10)
    message = await fake.say(alice, "meanwhile")
    await fake.wait_for_ack(message)
    assert not press.acked  # still being answered, yet the message got through
    release.set()
    await fake.wait_for_ack(press)
    assert press.response == {"toast": {"type": "info", "content": "noted"}} and press.pushes == 1
