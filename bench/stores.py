"""``python -m bench --stores``: what each conversation store costs a turn, and a cold resume from the store.

Two measurements, each backend on a real server on 127.0.0.1 (started here, as the
tests do: ``tests/servers.py``):

* **The store's share of a warm turn**: the store calls a turn makes before Claude
  starts (so before the first update: the conversation read, the conversation and the
  turn record written; the scan for parked messages only on a conversation's first turn) and after it ends (the conversation
  read and both written again), timed around the store itself, per backend.
* **Cold resume**: the real CLI started with ``--resume`` for a conversation of a few
  turns, time from the message to the first text delta; *local*: the transcript on
  the machine's disk (``transcripts: local``); *from the store*: the conversation's
  private config dir emptied before every turn, so the transcript is written from the
  store first (``transcripts: store``, Redis and PostgreSQL) — a machine that never saw it.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import Agent, ConversationKey, Sections
from core.events import TextDelta, TurnError, TurnResult
from core.store import ConversationStore, MemoryStore, SQLiteStore, TurnRecord
from core.store.postgres import PostgresStore
from core.store.redis import RedisStore
from tests.servers import PostgresServer, RedisServer, pg_template

from .env import BenchEnv, BenchError

KEY = ConversationKey("bench", "user-1")
TARGET_WARM_MS = 5.0
TARGET_COLD_RATIO = 1.2


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


async def _turn_ops(store: ConversationStore, i: int, *, scan: bool = False) -> tuple[float, float]:
    """The store calls of one turn, as Conversations makes them: (before the first update, after the end) in ms.

    ``scan``: the read of the latest turns for parked messages, made by one instance on a
    conversation's first turn only (and again after a message is parked).
    """
    t0 = time.perf_counter()
    conv = await store.get(KEY)
    assert conv is not None
    if scan:
        await store.turns(KEY, 200)  # messages parked (debounce / merge) before this process started
    conv.status, conv.last_active_at = "running", time.time()
    await store.put(conv)
    record = TurnRecord(
        key=KEY, session_id=conv.session_id, user_id="user-1", user_text=f"message {i}", status="running"
    )
    await store.put_turn(record)
    t1 = time.perf_counter()
    conv = await store.get(KEY)
    assert conv is not None
    conv.message_count += 1
    conv.status = "idle"
    await store.put(conv)
    record.status, record.reply_text, record.finished_at = "ok", "the reply " * 20, time.time()
    await store.put_turn(record)
    t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000


async def warm_share(stores: dict[str, ConversationStore], turns: int) -> dict[str, tuple[list[float], list[float]]]:
    from core.store import Conversation

    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in stores}
    for store in stores.values():
        await store.put(Conversation(key=KEY, session_id="s-bench", cwd="/ws"))
        for i in range(3):
            await _turn_ops(store, i, scan=i == 0)
    for i in range(turns):
        for name, store in stores.items():  # interleaved: a slow moment hits every backend alike
            before, after = await _turn_ops(store, i)
            results[name][0].append(before)
            results[name][1].append(after)
    return results


async def first_delta(agent: Agent, text: str) -> float:
    """ms from the message to the first text delta of a turn (which must succeed)."""
    t0 = time.perf_counter()
    first: float | None = None
    async for event in agent.stream(text, user_id="user-1"):
        if isinstance(event, TextDelta) and first is None:
            first = time.perf_counter()
        if isinstance(event, TurnError):
            raise BenchError(f"cold resume turn failed: {event.message}")
        if isinstance(event, TurnResult) and first is None:
            first = time.perf_counter()
    assert first is not None
    return (first - t0) * 1000


async def _apart(section: dict[str, Any], name: str) -> dict[str, Any]:
    """The same server, but data of its own: a key prefix on Redis, a schema on PostgreSQL."""
    if section["backend"] == "redis":
        return {**section, "key_prefix": f"{section['key_prefix']}{name}:"}
    import asyncpg

    conn = await asyncpg.connect(section["dsn"])
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS cold_{name}")
    finally:
        await conn.close()
    return {**section, "dsn": f"{section['dsn']}?search_path=cold_{name}"}


async def cold_resume(
    env: BenchEnv, base: Path, stores: dict[str, dict[str, Any]], turns: int
) -> dict[str, list[float]]:
    """Cold-resume times per setup: ``<backend> local`` and ``<backend> from the store``."""
    agents: dict[str, tuple[Agent, Path | None]] = {}
    for backend, section in stores.items():
        for mode in ("local", "store"):
            root = base / f"{backend}-{mode}"
            own = await _apart(section, mode)
            sections = Sections.model_validate(
                {
                    "agent": {"env": env.cli_env, "pool_size": 2, "sessions_dir": str(root / "sessions")},
                    "workspace": {"base_dir": str(root / "workspaces")},
                    "store": {**own, "transcripts": mode},
                    "access": {"allow_all": True},
                }
            )
            agent = await Agent(sections).start()
            label = f"{backend}, transcript {'local' if mode == 'local' else 'from the store'}"
            agents[label] = (agent, root / "sessions" if mode == "store" else None)
    results: dict[str, list[float]] = {label: [] for label in agents}
    try:
        for agent, _ in agents.values():
            for i in range(4):  # a conversation of a few turns to resume
                await first_delta(agent, f"building the conversation {i}")
        for i in range(turns + 1):
            for label, (agent, wipe) in agents.items():
                agent.runtime.forget(ConversationKey("api", "user-1"))
                await asyncio.sleep(0.3)  # the process closes
                if wipe is not None:  # a machine that has never seen the conversation
                    for path in wipe.glob("**/projects"):
                        await asyncio.to_thread(shutil.rmtree, path)
                took = await first_delta(agent, f"cold message {i}")
                if i:  # the first round warms the caches up
                    results[label].append(took)
    finally:
        for agent, _ in agents.values():
            await agent.close()
    return results


async def run_store_bench(turns: int, progress: Callable[[str], Any] = print) -> str:
    """Start the servers, measure, stop them; returns the markdown section."""
    with tempfile.TemporaryDirectory(prefix="ccbridge-bench-stores-") as tmp:
        base = Path(tmp)
        redis = await asyncio.to_thread(RedisServer(base / "redis").start)
        template = await asyncio.to_thread(pg_template, base)
        postgres = await asyncio.to_thread(PostgresServer(template).start)
        try:
            progress("stores: warm-turn share")
            stores: dict[str, ConversationStore] = {
                "memory": MemoryStore(),
                "sqlite": SQLiteStore(base / "bench.db"),
                "redis": RedisStore(redis.url, key_prefix="bench:"),
                "postgres": PostgresStore(postgres.dsn(), pool_max=4),
            }
            for store in stores.values():
                await store.open()
            try:
                warm = await warm_share(stores, max(turns * 15, 300))  # past the 200 turns a scan would read
            finally:
                for store in stores.values():
                    await store.close()
            progress("stores: cold resume (real CLI)")
            async with BenchEnv() as env:
                cold = await cold_resume(
                    env,
                    base,
                    {
                        "redis": {"backend": "redis", "url": redis.url, "key_prefix": "cold:"},
                        "postgres": {"backend": "postgres", "dsn": postgres.dsn()},
                    },
                    turns,
                )
        finally:
            await asyncio.to_thread(redis.stop)
            await asyncio.to_thread(postgres.remove)
    return markdown(warm, cold, turns)


def markdown(warm: dict[str, tuple[list[float], list[float]]], cold: dict[str, list[float]], turns: int) -> str:
    lines = [
        "| store | before the first update (median ms) | p90 | at the end of the turn (median ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (before, after) in warm.items():
        p90 = statistics.quantiles(before, n=10)[-1] if len(before) >= 10 else max(before)
        lines.append(f"| {name} | {ms(before)} | {p90:.2f} | {ms(after)} |")
    worst = max(statistics.median(before) for before, _ in warm.values())
    lines += [
        "",
        f"Target: the store adds <= {TARGET_WARM_MS:g} ms to a warm turn's first update: "
        f"{'met' if worst <= TARGET_WARM_MS else 'MISSED'} (worst median {worst:.2f} ms).",
        "",
        f"| cold resume, real CLI ({turns} turns) | message -> first text delta (median ms) | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, values in cold.items():
        lines.append(f"| {label} | {ms(values)} | {min(values):.0f} | {max(values):.0f} |")
    lines.append("")
    for backend in ("redis", "postgres"):
        local = cold.get(f"{backend}, transcript local")
        mirrored = cold.get(f"{backend}, transcript from the store")
        if local and mirrored:
            ratio = statistics.median(mirrored) / statistics.median(local)
            verdict = "met" if ratio <= TARGET_COLD_RATIO else "MISSED"
            lines.append(
                f"- {backend}: cold resume from the store / from local disk = {ratio:.2f}x (target <= {TARGET_COLD_RATIO}x: {verdict})"
            )
    return "\n".join(lines)


SECTION = "## Stores: the store's share of a turn, and cold resume from the store"


def with_section(results: str, section: str, command: str, date: str) -> str:
    """``results`` (RESULTS.md) with its stores section replaced by ``section`` (or appended)."""
    from .report import with_section as replace_section

    body = f"Measured {date} with `{command}` (see `bench/stores.py` for what is timed).\n\n{section}"
    return replace_section(results, SECTION, body)
