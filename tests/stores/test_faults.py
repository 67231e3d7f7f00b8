"""Store faults against real servers: stopped, started again, unreachable at start.

Every backend raises StoreUnavailable while its server is down and is used again,
without reopening, once it is back; a turn cut off from Redis mid-way keeps its
reply and its record, and the service comes back by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from core import Agent, ConversationKey, Sections, StoreUnavailable, UserRef
from core.dispatcher import REPLY_UNSAVED, Dispatcher, IncomingMessage
from core.events import TextDelta, TurnError, TurnResult
from core.store import ConversationStore, StoreSettings, create_store
from core.store.postgres import PostgresStore
from core.store.redis import RedisStore
from core.transcripts import TranscriptStore, transcripts_for
from core.transcripts.migrate import local_transcripts
from core.transcripts.mirror import read_jsonl
from tests.contracts.store_contract import KEY, conv, turn
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually
from tests.servers import PostgresServer, RedisServer, free_port


def settings(store: dict[str, Any]) -> Any:
    return TypeAdapter(StoreSettings).validate_python(store)


async def _down_and_back(store: ConversationStore, transcripts: TranscriptStore, stop: Any, start: Any) -> None:
    await store.put(conv())
    await transcripts.append({"project_key": "p", "session_id": "s"}, [{"type": "user", "uuid": "u1"}])  # type: ignore[list-item]
    await asyncio.to_thread(stop)
    for attempt in (store.get(KEY), store.put(conv(session="s-2")), store.put_turn(turn()), store.ping(write=True)):
        with pytest.raises(StoreUnavailable):
            await attempt
    with pytest.raises(StoreUnavailable):
        await transcripts.append({"project_key": "p", "session_id": "s"}, [{"type": "user", "uuid": "u2"}])  # type: ignore[list-item]
    await asyncio.to_thread(start)
    await store.ping(write=True)  # back by itself: the same objects, nothing reopened
    assert (await store.get(KEY)).session_id == "s-1"  # type: ignore[union-attr]  # kept through the restart
    await store.put(conv(session="s-3"))
    assert (await store.get(KEY)).session_id == "s-3"  # type: ignore[union-attr]
    await transcripts.append({"project_key": "p", "session_id": "s"}, [{"type": "user", "uuid": "u2"}])  # type: ignore[list-item]
    assert await transcripts.load({"project_key": "p", "session_id": "s"}) == [
        {"type": "user", "uuid": "u1"},
        {"type": "user", "uuid": "u2"},
    ]


async def test_redis_stopped_and_started_again_is_unavailable_then_used_again(own_redis: RedisServer) -> None:
    section = settings({"backend": "redis", "url": own_redis.url})
    async with create_store(section) as store, transcripts_for(section) as transcripts:
        await _down_and_back(store, transcripts, own_redis.stop, own_redis.start)


async def test_postgres_stopped_and_started_again_is_unavailable_then_used_again(own_postgres: PostgresServer) -> None:
    section = settings({"backend": "postgres", "dsn": own_postgres.dsn(), "pool_max": 2})
    async with create_store(section) as store, transcripts_for(section) as transcripts:
        await _down_and_back(store, transcripts, own_postgres.stop, own_postgres.start)


@pytest.mark.parametrize(
    ("store", "key"),
    [
        (lambda port: RedisStore(f"redis://:s3cret@127.0.0.1:{port}/0"), "store.url"),
        (lambda port: PostgresStore(f"postgresql://ccbridge:s3cret@127.0.0.1:{port}/x", timeout=2), "store.dsn"),
    ],
)
async def test_unreachable_at_start_is_one_line_naming_the_key_without_the_password(
    store: Callable[[int], ConversationStore], key: str
) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await store(free_port()).open()
    message = str(caught.value)
    assert message.startswith(f"{key}: cannot reach") and "\n" not in message
    assert "s3cret" not in message and "***" in message


async def test_unreachable_store_at_start_is_one_ccbridge_line_from_run_bot(tmp_path: Path) -> None:
    from tests.core.test_run_bot import run_bot

    config = tmp_path / "config.yaml"
    config.write_text(f"store:\n  backend: redis\n  url: redis://:hunter2@127.0.0.1:{free_port()}/0\n")
    code, out, err = await run_bot(
        "--config", str(config), stdin="hi\n", cwd=tmp_path, env={"ANTHROPIC_API_KEY": "sk-test"}
    )
    lines = err.strip().splitlines()
    assert code == 1 and out == ""
    assert len(lines) == 1 and lines[0].startswith("ccbridge: store.url: cannot reach Redis at redis://:***@127.0.0.1")
    assert "hunter2" not in err


@pytest.mark.agent
async def test_redis_stopped_mid_turn_keeps_the_reply_and_service_resumes_without_a_restart(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, own_redis: RedisServer
) -> None:
    section = settings({"backend": "redis", "url": own_redis.url})
    agent = Agent(make_sections().model_copy(update={"store": section}))
    fake_api.rules["slow question"] = [Text("the slow answer", chunks=4, delay=0.4)]
    async with agent:
        result: TurnResult | None = None
        async for event in agent.stream("a slow question", user_id="alice"):
            if isinstance(event, TextDelta) and own_redis.process is not None:
                await asyncio.to_thread(own_redis.stop)  # the turn's start was recorded; its end cannot be
            if isinstance(event, TurnResult):
                result = event
        assert result is not None and result.text == "the slow answer"  # the reply reached the user
        health = await agent.health()
        assert not health.ready and any("store" in p for p in health.problems)

        refused = [e async for e in agent.stream("while it is down", user_id="alice")]
        assert isinstance(refused[-1], TurnError) and refused[-1].kind == "store"
        assert "store is unavailable" in refused[-1].message and "try again" in refused[-1].message

        await asyncio.to_thread(own_redis.start)
        assert (await agent.health()).ready  # back by itself; the kept record is written
        history = await agent.store.turns(ConversationKey("api", "alice"))
        assert [(t.user_text, t.status, t.reply_text) for t in history] == [
            ("a slow question", "ok", "the slow answer")
        ]
        after = await agent.chat("and now?", user_id="alice")
        assert not after.is_error and after.text == "echo: and now?"
        assert fake_api.requests[-1].user_texts()[-2:] == ["a slow question", "and now?"]
        # the transcript batch the store missed during the outage was sent again with the next one
        assert agent.transcripts is not None
        [main] = [k for k in await agent.transcripts.keys() if k["session_id"] == after.session_id]
        mirrored = str(await agent.transcripts.load(main))
        assert "the slow answer" in mirrored and "and now?" in mirrored
        [local] = [p for k, p in local_transcripts(agent.sections.agent.sessions_dir) if k == main]
        store = agent.transcripts

        async def the_same() -> bool:  # each line once, none missing (the last batch may still be on its way)
            return await store.load(main) == read_jsonl(local)

        await eventually(the_same, what="the stored transcript to equal the local one")


class _StopsRedisOnTheFirstPost(RecordingSink):
    """A chat whose store goes away as soon as the reply starts showing."""

    redis: RedisServer | None = None

    async def post(self, text: str) -> Any:
        if self.redis is not None and self.redis.process is not None:
            await asyncio.to_thread(self.redis.stop)
        return await super().post(text)


@pytest.mark.agent
async def test_a_chat_user_is_told_when_the_store_went_away_during_the_reply(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, own_redis: RedisServer
) -> None:
    section = settings({"backend": "redis", "url": own_redis.url})
    fake_api.rules["slow question"] = [Text("the slow answer", chunks=4, delay=0.4)]
    async with Agent(make_sections().model_copy(update={"store": section})) as agent:
        sink = _StopsRedisOnTheFirstPost()
        sink.redis = own_redis
        key = ConversationKey("chat", "alice")
        await Dispatcher(agent).handle(IncomingMessage(key, UserRef("alice"), "a slow question", sink))
        shown = sink.visible()
        assert any("the slow answer" in text for text in shown[:-1])  # the reply reached the user...
        assert shown[-1] == REPLY_UNSAVED  # ...and then what happened to it
        await asyncio.to_thread(own_redis.start)
        assert (await agent.health()).ready
        [kept] = await agent.store.turns(key)
        assert (kept.user_text, kept.status, kept.reply_text) == ("a slow question", "ok", "the slow answer")
        after = RecordingSink()
        await Dispatcher(agent).handle(IncomingMessage(key, UserRef("alice"), "and now?", after))
        assert after.visible()[-1].endswith("echo: and now?") and REPLY_UNSAVED not in after.visible()


async def test_a_redis_restarted_without_its_data_is_noticed_while_running(
    make_sections: Callable[..., Sections],
    fake_api: FakeAnthropicAPI,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import shutil

    section = settings({"backend": "redis", "url": own_redis.url, "transcripts": "local"})
    async with Agent(make_sections().model_copy(update={"store": section})) as agent:
        assert not (await agent.chat("remember me", user_id="alice")).is_error
        assert (await agent.health()).ready
        await asyncio.to_thread(own_redis.stop)
        shutil.rmtree(own_redis.workdir)  # its append-only file is gone: it comes back empty
        await asyncio.to_thread(own_redis.start)
        health = await agent.health()
        assert not health.ready and any("emptied or replaced while running" in p for p in health.problems)
        assert not (await agent.health()).ready
        lost = [r for r in caplog.records if "emptied or replaced" in r.getMessage()]
        assert len(lost) == 1 and lost[0].levelname == "ERROR"  # said once, not on every probe


async def test_ready_says_not_ready_while_the_coordination_redis_is_down_and_ready_again_after(
    make_sections: Callable[..., Sections], own_redis: RedisServer
) -> None:
    coordination = {"backend": "redis", "url": own_redis.url, "instance_id": "a", "lease_ttl": 3}
    async with Agent(make_sections(coordination=coordination)) as agent:
        assert (await agent.health()).ready
        await asyncio.to_thread(own_redis.stop)
        health = await agent.health()
        assert not health.ready
        assert any(p.startswith("coordination: the coordination Redis") for p in health.problems), health.problems
        assert all("store" not in p for p in health.problems)  # the store itself is fine
        await asyncio.to_thread(own_redis.start)

        async def ready() -> bool:
            return (await agent.health()).ready

        await eventually(ready, timeout=15, what="ready once the coordination Redis is back")
