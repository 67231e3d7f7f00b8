"""Several real ``run_bot.py`` instances of one Telegram bot, coordinated by a real redis-server.

Each instance has its own ``HOME``; they share the store, the coordination Redis, the workspace
directory and the session directory — as instances behind one load balancer on shared storage would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang, Text, ToolCall
from tests.helpers import eventually
from tests.telegram.fake_bot_api import FakeBotAPI
from tests.telegram.people import ADA, ADA_DM

from .instances import Instance

Launch = Callable[..., Awaitable[Instance]]


def update(bot_api: FakeBotAPI, text: str) -> dict[str, Any]:
    """An update as Telegram posts it to a webhook (through the load balancer, to any instance)."""
    return {"update_id": next(bot_api._update_ids), "message": bot_api.new_message(ADA_DM, ADA, text)}


async def turns(store: Path | str) -> list[tuple[str, str, str]]:
    """(user text, status, instance) of every recorded turn, oldest first, read from the shared store:
    the SQLite file under ``store`` (a test's tmp_path), or the PostgreSQL database at DSN ``store``."""
    query = "SELECT user_text, status, instance_id FROM turns ORDER BY id"
    if isinstance(store, str):
        conn = await asyncpg.connect(store)
        try:
            rows = [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()
    else:
        with sqlite3.connect(store / "shared" / "data" / "ccbridge.db") as db:
            rows = db.execute(query).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def recorded(store: Path | str, expected: list[tuple[str, str, str]]) -> None:
    """The store holds exactly ``expected`` (a turn's end is written just after its reply is shown)."""
    try:

        async def matches() -> bool:
            return await turns(store) == expected

        await eventually(matches, timeout=10)
    except AssertionError:
        assert await turns(store) == expected


def asked(fake_api: FakeAnthropicAPI, text: str) -> int:
    """How many model requests carried ``text`` as their newest user message."""
    return sum(1 for r in fake_api.requests if r.last_user_text() == text)


async def answered(bot_api: FakeBotAPI, text: str, timeout: float = 60) -> None:
    await bot_api.wait_for(
        lambda: f"echo: {text}" in bot_api.texts(42), timeout=timeout, what=f"the answer to {text!r}"
    )


async def test_a_conversation_started_on_a_continues_on_b_on_as_warm_process(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await launch("a"), await launch("b")
    # the shared directories of this test are on one machine's disk: said at start
    assert "workspace.base_dir" in await a.logged("is on a local filesystem")
    assert await a.deliver(update(bot_api, "my name is Ada")) == 200
    await answered(bot_api, "my name is Ada")
    [warm] = a.clis()

    assert await b.deliver(update(bot_api, "what is my name?")) == 200
    await answered(bot_api, "what is my name?")
    assert b.clis() == []  # B spawned no Claude Code process ...
    assert a.clis() == [warm]  # ... the turn ran on A's warm one
    last = fake_api.requests[-1]
    assert last.last_user_text() == "what is my name?" and "my name is Ada" in str(last.messages)
    await recorded(tmp_path, [("my name is Ada", "ok", "a"), ("what is my name?", "ok", "a")])


async def a_owning_adas_chat(launch: Launch, bot_api: FakeBotAPI) -> tuple[Instance, Instance]:
    """Instances A and B; Ada's chat started through A, which owns it."""
    a, b = await launch("a"), await launch("b")
    await a.deliver(update(bot_api, "my name is Ada"))
    await answered(bot_api, "my name is Ada")
    return a, b


async def test_the_owner_posts_the_reply_itself_so_the_receiver_may_die_after_handing_over(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await a_owning_adas_chat(launch, bot_api)
    fake_api.rules["take your time"] = [Text("slowly, for Ada", chunks=6, delay=0.5)]
    assert await b.deliver(update(bot_api, "take your time")) == 200  # handed to A, the owner
    await eventually(lambda: asked(fake_api, "take your time"), what="the turn reaching the model on A")
    b.kill()  # the receiver is gone: nobody is left to show events sent back to it
    await b.process.wait()
    await bot_api.wait_for(lambda: "slowly, for Ada" in bot_api.texts(42), timeout=60, what="A's own reply")
    assert not [t for t in bot_api.texts(42) if "cut off" in t or "went wrong" in t]
    await recorded(tmp_path, [("my name is Ada", "ok", "a"), ("take your time", "ok", "a")])


async def test_an_owner_killed_mid_reply_to_a_handed_over_message_costs_one_notice(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await a_owning_adas_chat(launch, bot_api)
    fake_api.rules["a long job"] = [Hang("working on it", seconds=120)]
    await b.deliver(update(bot_api, "a long job"))  # handed to A, which begins to show its reply
    await bot_api.wait_for(
        lambda: any("working on it" in d.text for d in bot_api.drafts), what="A's reply beginning to show"
    )
    a.kill()
    await a.process.wait()
    # B sees the owner's heartbeat lapse: the user is told once that the reply was cut off
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(42) if "cut off" in t], timeout=30, what="the notice")
    await b.deliver(update(bot_api, "what is my name?"))
    await answered(bot_api, "what is my name?", timeout=90)
    assert "my name is Ada" in str(fake_api.requests[-1].messages)
    assert len([t for t in bot_api.texts(42) if "cut off" in t]) == 1, bot_api.texts(42)
    assert asked(fake_api, "a long job") == 1  # shown once already: never run again elsewhere
    await recorded(
        tmp_path,
        [("my name is Ada", "ok", "a"), ("a long job", "interrupted", "a"), ("what is my name?", "ok", "b")],
    )


async def test_the_same_update_delivered_to_two_instances_is_answered_once(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await launch("a"), await launch("b")
    twice = update(bot_api, "hello")
    statuses = await asyncio.gather(a.deliver(twice), b.deliver(twice))
    assert statuses == [200, 200]
    await answered(bot_api, "hello")
    # a later message of the conversation is answered after anything the duplicate could have caused
    await b.deliver(update(bot_api, "and then?"))
    await answered(bot_api, "and then?")
    assert bot_api.texts(42).count("echo: hello") == 1
    assert asked(fake_api, "hello") == 1
    owner = (await turns(tmp_path))[0][2]  # whichever instance won the delivery owns the conversation
    await recorded(tmp_path, [("hello", "ok", owner), ("and then?", "ok", owner)])


async def test_an_owner_killed_mid_turn_costs_one_notice_and_nothing_else(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path, postgres_dsn: str
) -> None:
    # PostgreSQL holds the conversations and the transcripts; each instance keeps its own session directory
    def on_postgres(name: str) -> dict[str, Any]:
        return {
            "store": {"backend": "postgres", "dsn": postgres_dsn, "transcripts": "store"},
            "agent": {"sessions_dir": str(tmp_path / name / "sessions")},
        }

    a, b = await launch("a", **on_postgres("a")), await launch("b", **on_postgres("b"))
    await a.deliver(update(bot_api, "my name is Ada"))
    await answered(bot_api, "my name is Ada")
    fake_api.rules["a long job"] = [Hang("working on it", seconds=120)]
    await a.deliver(update(bot_api, "a long job"))
    await eventually(lambda: asked(fake_api, "a long job"), what="the long turn reaching the model")
    [cli] = a.clis()
    a.kill()
    await a.process.wait()

    await b.deliver(update(bot_api, "what is my name?"))
    await answered(bot_api, "what is my name?", timeout=90)
    last = fake_api.requests[-1]
    assert last.last_user_text() == "what is my name?" and "my name is Ada" in str(last.messages)
    notices = [t for t in bot_api.texts(42) if "cut off" in t]
    assert len(notices) == 1, bot_api.texts(42)
    await recorded(
        postgres_dsn,
        [("my name is Ada", "ok", "a"), ("a long job", "interrupted", "a"), ("what is my name?", "ok", "b")],
    )
    await b.deliver(update(bot_api, "anything else?"))
    await answered(bot_api, "anything else?")
    assert len([t for t in bot_api.texts(42) if "cut off" in t]) == 1  # told once
    await eventually(lambda: not Path(f"/proc/{cli}").exists(), what="A's Claude Code process to end with A")


async def test_an_approval_or_stop_through_b_acts_on_the_turn_running_on_a(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await launch("a"), await launch("b")
    fake_api.enqueue(ToolCall("Bash", {"command": "echo hi > notes.txt", "description": "write a file"}))
    await a.deliver(update(bot_api, "write it"))
    prompt = await bot_api.wait_for(
        lambda: next((m for m in bot_api.bot_messages(42) if m.buttons()), None), what="the approval prompt"
    )
    allow = next(button for button in prompt.buttons() if "Allow" in button["text"])
    press = bot_api.new_press(ADA, prompt, allow["callback_data"])
    assert await b.deliver(press) == 200  # the press lands on B; the turn waits on A
    await eventually(lambda: fake_api.requests[-1].tool_results(), what="the tool's result reaching the model")
    workspace = next((tmp_path / "shared" / "workspaces").rglob("notes.txt"))
    assert workspace.read_text() == "hi\n"
    assert b.clis() == []

    fake_api.rules["a long job"] = [Hang("working on it", seconds=120)]
    await a.deliver(update(bot_api, "a long job"))
    await eventually(lambda: asked(fake_api, "a long job"), what="the long turn reaching the model")
    await b.deliver(update(bot_api, "/stop"))

    async def stopped_on_a() -> bool:
        return any(
            t == "a long job" and s in ("interrupted", "error") and i == "a" for t, s, i in await turns(tmp_path)
        )

    await eventually(stopped_on_a, what="the long turn stopped on A")
    assert b.clis() == []


async def test_with_long_polling_exactly_one_instance_polls_and_another_takes_over(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    a = await launch("a", mode="polling")
    b = await launch("b", mode="polling", wait=False)
    await a.logged("holds the platform connection")
    await asyncio.sleep(2)  # B had time to try
    assert not any("holds the platform connection" in line for line in b.log)
    polls = {call.params.get("offset") for call in bot_api.calls_of("getUpdates")}
    assert polls  # A polls
    bot_api.say(ADA_DM, ADA, "hello")
    await answered(bot_api, "hello")

    a.kill()
    await a.process.wait()
    await b.logged("holds the platform connection", timeout=30)
    bot_api.say(ADA_DM, ADA, "still there?")
    await answered(bot_api, "still there?")


async def test_a_turn_longer_than_the_lease_ttl_is_never_run_twice(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await launch("a"), await launch("b")
    fake_api.rules["slow"] = [Text("slowly, slowly done", chunks=8, delay=1.0)]  # ~8 s; the lease TTL is 3 s
    await a.deliver(update(bot_api, "slow"))
    await eventually(lambda: asked(fake_api, "slow"), what="the slow turn reaching the model")
    await asyncio.sleep(4)  # past the TTL, mid-turn
    await b.deliver(update(bot_api, "meanwhile"))  # B must hand it to A (queued behind the turn), not take over
    await bot_api.wait_for(
        lambda: "slowly, slowly done" in bot_api.texts(42), timeout=60, what="the slow turn's answer"
    )
    await answered(bot_api, "meanwhile")
    assert asked(fake_api, "slow") == 1
    assert b.clis() == []
    await recorded(tmp_path, [("slow", "ok", "a"), ("meanwhile", "ok", "a")])


async def test_a_graceful_stop_hands_conversations_over_at_once(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await launch("a", coordination={"lease_ttl": 60}), await launch("b", coordination={"lease_ttl": 60})
    await a.deliver(update(bot_api, "my name is Ada"))
    await answered(bot_api, "my name is Ada")
    await b.deliver(update(bot_api, "/status"))
    status = await bot_api.wait_for(
        lambda: next((t for t in bot_api.texts(42) if "Instance" in t), None), what="the /status answer"
    )
    assert "Instance a (owns this conversation)" in status  # asked through B, answered by the owner

    await a.stop()  # SIGTERM: drains, then releases its leases (far sooner than their 60 s TTL)
    await b.deliver(update(bot_api, "what is my name?"))
    await answered(bot_api, "what is my name?", timeout=30)
    last = fake_api.requests[-1]
    assert "my name is Ada" in str(last.messages)  # B resumed the session from the shared session directory
    assert not [t for t in bot_api.texts(42) if "cut off" in t]  # nothing was cut off: nobody is told so
    await recorded(tmp_path, [("my name is Ada", "ok", "a"), ("what is my name?", "ok", "b")])


async def test_a_graceful_stop_lets_the_running_turn_finish_then_hands_the_conversation_over(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a, b = await launch("a", coordination={"lease_ttl": 60}), await launch("b", coordination={"lease_ttl": 60})
    fake_api.rules["a slow job"] = [Text("the slow job is done", chunks=8, delay=0.5)]
    await a.deliver(update(bot_api, "a slow job"))
    await eventually(lambda: asked(fake_api, "a slow job"), what="the slow turn reaching the model")
    stopping = asyncio.create_task(a.stop())  # SIGTERM mid-turn
    await a.logged("letting 1 running turn(s) finish")
    try:
        taken = await a.deliver(update(bot_api, "late news")) == 200
    except aiohttp.ClientConnectionError:
        taken = False
    assert not taken  # it takes no more messages (Telegram retries them, at the load balancer: on B)
    await stopping
    assert "the slow job is done" in bot_api.texts(42)  # the turn finished: no "Stopped", nothing cut off
    assert not [t for t in bot_api.texts(42) if "Stopped" in t or "cut off" in t]
    await b.deliver(update(bot_api, "what was the job?"))  # its lease released: B takes over at once
    await answered(bot_api, "what was the job?", timeout=30)
    assert "a slow job" in str(fake_api.requests[-1].messages)
    await recorded(tmp_path, [("a slow job", "ok", "a"), ("what was the job?", "ok", "b")])


async def test_a_turn_outlasting_the_drain_is_stopped_and_says_so(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a = await launch("a", drain_timeout=1)
    fake_api.rules["a long job"] = [Hang("working on it", seconds=120)]
    await a.deliver(update(bot_api, "a long job"))
    await eventually(lambda: asked(fake_api, "a long job"), what="the long turn reaching the model")
    await a.stop()
    assert await a.logged("stopping the turns still running after 1s")
    assert [t for t in bot_api.texts(42) if "Stopped" in t]  # the user sees how it ended
    await recorded(tmp_path, [("a long job", "interrupted", "a")])


async def test_the_interrupt_policy_holds_when_the_new_message_lands_on_another_instance(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a = await launch("a", access={"busy_policy": "interrupt"})
    b = await launch("b", access={"busy_policy": "interrupt"})
    fake_api.rules["a long job"] = [Hang("working on it", seconds=120)]
    await a.deliver(update(bot_api, "a long job"))
    await eventually(lambda: asked(fake_api, "a long job"), what="the long turn reaching the model")
    await b.deliver(update(bot_api, "never mind, say hi"))  # lands on B while A runs the turn
    await answered(bot_api, "never mind, say hi")
    # the long turn stopped on A, and the owner ran the new message on its warm client
    await recorded(tmp_path, [("a long job", "interrupted", "a"), ("never mind, say hi", "ok", "a")])
    assert asked(fake_api, "a long job") == 1 and asked(fake_api, "never mind, say hi") == 1
    assert b.clis() == []


async def test_merge_holds_when_the_messages_land_on_another_instance(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a = await launch("a", access={"busy_policy": "merge"})
    b = await launch("b", access={"busy_policy": "merge"})
    fake_api.rules["a slow job"] = [Text("the slow job is done", chunks=10, delay=0.5)]
    await a.deliver(update(bot_api, "a slow job"))
    await eventually(lambda: asked(fake_api, "a slow job"), what="the slow turn reaching the model")
    for text in ("hi", "the build fails", "see the log"):  # each lands on B while A runs the turn
        await b.deliver(update(bot_api, text))
    await answered(bot_api, "hi\n\nthe build fails\n\nsee the log")
    # one next turn, on the owner's warm process, answered the three in order
    await recorded(
        tmp_path,
        [
            ("a slow job", "ok", "a"),
            ("hi", "merged", "a"),
            ("the build fails", "merged", "a"),
            ("see the log", "merged", "a"),
            ("hi\n\nthe build fails\n\nsee the log", "ok", "a"),
        ],
    )
    assert len([t for t in bot_api.texts(42) if "together" in t]) == 1  # told once
    assert b.clis() == []


async def test_a_debounced_burst_landing_on_another_instance_is_answered_in_one_turn(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    a = await launch("a", access={"debounce": 3.0})
    b = await launch("b", access={"debounce": 3.0})
    await a.deliver(update(bot_api, "hello"))  # A owns the conversation from now on
    await answered(bot_api, "hello")
    for text in ("hi", "the build fails", "see the log"):  # each lands on B, inside one window on A
        await b.deliver(update(bot_api, text))
    await answered(bot_api, "hi\n\nthe build fails\n\nsee the log")
    await recorded(
        tmp_path,
        [
            ("hello", "merged", "a"),  # a lone message waits out its window too
            ("hello", "ok", "a"),
            ("hi", "merged", "a"),
            ("the build fails", "merged", "a"),
            ("see the log", "merged", "a"),
            ("hi\n\nthe build fails\n\nsee the log", "ok", "a"),
        ],
    )
    assert asked(fake_api, "hi\n\nthe build fails\n\nsee the log") == 1
    assert b.clis() == []


@pytest.mark.parametrize("how", ["stopped", "killed"])
async def test_messages_an_instance_left_waiting_are_answered_by_another_when_it_goes_for_good(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path, how: str
) -> None:
    """A scaled down (or killed, and back under another id, if at all) while messages wait out their
    debounce window on it: B, alive throughout, answers them once A's heartbeat is gone, without a
    new message, and says they waited."""
    a = await launch("a", access={"debounce": 30.0})
    b = await launch("b", access={"debounce": 30.0})
    for text in ("please remember this", "and this"):
        assert await a.deliver(update(bot_api, text)) == 200
    await eventually(lambda: bot_api.calls_of("sendChatAction"), what="the typing indicator on A")
    await recorded(tmp_path, [("please remember this", "queued", "a"), ("and this", "queued", "a")])
    if how == "stopped":
        await a.stop()
    else:
        a.kill()
        await a.process.wait()
    await bot_api.wait_for(
        lambda: any("echo: please remember this\n\nand this" in t for t in bot_api.texts(42)),
        timeout=60,
        what="B's answer to the waiting messages",
    )
    [told] = [t for t in bot_api.texts(42) if "echo: please remember this" in t]
    assert "waited" in told
    assert asked(fake_api, "please remember this\n\nand this") == 1
    await b.logged("answering 2 message(s) in telegram:42")
    await recorded(
        tmp_path,
        [
            ("please remember this", "merged", "a"),
            ("and this", "merged", "a"),
            ("please remember this\n\nand this", "ok", "b"),
        ],
    )


async def test_messages_waiting_on_an_instance_killed_are_answered_when_it_is_back(
    launch: Launch, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    """SIGKILL inside the debounce window (nothing ran yet): the instance started again under its id
    answers what waited, in one turn, and says so."""
    a = await launch("a", access={"debounce": 30.0})
    for text in ("please remember this", "and this"):
        assert await a.deliver(update(bot_api, text)) == 200
    await recorded(tmp_path, [("please remember this", "queued", "a"), ("and this", "queued", "a")])
    a.kill()
    await a.process.wait()
    assert not fake_api.requests
    await launch("a", access={"debounce": 30.0})
    await bot_api.wait_for(
        lambda: any("echo: please remember this\n\nand this" in t for t in bot_api.texts(42)),
        timeout=60,
        what="the waiting messages answered after the restart",
    )
    [told] = [t for t in bot_api.texts(42) if "echo: please remember this" in t]
    assert "waited through a restart" in told
    assert asked(fake_api, "please remember this\n\nand this") == 1
    await recorded(
        tmp_path,
        [
            ("please remember this", "merged", "a"),
            ("and this", "merged", "a"),
            ("please remember this\n\nand this", "ok", "a"),
        ],
    )
