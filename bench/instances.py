"""``python -m bench --instances``: what several instances cost (issue: several instances, one bot).

Three measurements, on a real ``redis-server`` on 127.0.0.1 and the instant fake model:

* **Coordination on a warm turn**: one instance, the same warm conversation, with the in-memory
  coordination and with Redis coordination (the delivery claim, the lease check, the fence) —
  message in -> first update (the runner interleaves the turns of both).
* **A forwarded turn**: two real ``run_bot.py`` processes (Telegram webhooks, the fake Bot API
  here) sharing the store and the Redis, the conversation owned by A; turns posted alternately to A
  (local) and to B, which hands them to A's inbox, A runs them on its warm process and streams the
  events back, B shows them — message posted -> first reply text on the platform.
* **Failover**: two real ``run_bot.py`` processes (Telegram webhooks, the fake Bot API here); a
  conversation owned by A; A is killed with SIGKILL and a message for the conversation is posted to
  B at once — time from the kill to B's first update on the platform (the lease TTL, then a cold
  resume of the session).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from core import Agent, Dispatcher, Sections

from .env import BenchEnv, BenchError
from .report import Row
from .runner import run_benchmark
from .scenarios import CCBridgeWarm

SECTION = "## Several instances: coordination, forwarding, failover"
TARGET_COORDINATION_MS = 5.0
TARGET_FORWARD_MS = 10.0
FAILOVER_LEASE_TTL = 3.0


class _Redis:
    url = ""  # set by run_instances_bench before the scenarios start


def _sections(env: BenchEnv, base: Path, coordination: dict[str, Any], store: Path | None = None) -> Sections:
    return Sections.model_validate(
        {
            "agent": {"env": env.cli_env, "pool_size": 4, "sessions_dir": str(base.parent / "sessions")},
            "workspace": {"base_dir": str(base.parent / "workspaces")},
            "store": {"backend": "sqlite", "path": str(store or base / "ccbridge.db")},
            "access": {"allow_all": True},
            "coordination": coordination,
        }
    )


class LocalMemory(CCBridgeWarm):
    """One instance, in-memory coordination (the embedded default)."""

    name = "local-memory"
    label = "one instance, memory coordination"


class LocalRedis(CCBridgeWarm):
    """One instance, Redis coordination: delivery claims, the lease and the fence in Redis."""

    name = "local-redis"
    label = "one instance, Redis coordination"
    instance: ClassVar[str] = "solo"

    async def start(self) -> None:
        base = self.env.dir(self.name)
        coordination = {"backend": "redis", "url": _Redis.url, "instance_id": self.instance, "key_prefix": "bl:"}
        self.agent = await Agent(_sections(self.env, base, coordination)).start()
        self.dispatcher = Dispatcher(self.agent)


async def _first_update(bot_api: Any, instance: Any, update: dict[str, Any]) -> float:
    """Milliseconds from posting ``update`` to ``instance``'s webhook to the first reply text on the platform."""
    before = len(bot_api.calls)
    started = time.perf_counter()
    await instance.deliver(update)

    def posted() -> bool:
        return any(c.method in ("sendMessage", "sendMessageDraft") for c in bot_api.calls[before:])

    if not await bot_api.watch(posted, 60):
        raise BenchError(f"no reply to {update['message']['text']!r}")
    return (time.perf_counter() - started) * 1000


async def forwarding(env: BenchEnv, redis_url: str, turns: int, warmup: int) -> tuple[list[float], list[float]]:
    """First-update times of turns received by their owner A and of turns received by B (two processes)."""
    from tests.scale.instances import start_instance
    from tests.telegram.fake_bot_api import FakeBotAPI, private_chat, user

    local: list[float] = []
    forwarded: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ccbridge-forwarding-") as tmp:
        async with FakeBotAPI() as bot_api:
            overrides = {"coordination": {"key_prefix": "bw:"}}
            a = await start_instance(Path(tmp), bot_api, env.cli_env, redis_url, "a", overrides=overrides)
            b = await start_instance(Path(tmp), bot_api, env.cli_env, redis_url, "b", overrides=overrides)
            try:
                await a.logged("webhook server on")
                await b.logged("webhook server on")
                person = user(42, "Ada")
                chat = private_chat(person)
                ids = iter(range(20_000, 30_000))

                def message(text: str) -> dict[str, Any]:
                    return {"update_id": next(ids), "message": bot_api.new_message(chat, person, text)}

                for i in range(warmup):  # the conversation starts on A, which owns it from then on
                    await _first_update(bot_api, a, message(f"warm-up {i}"))
                    await asyncio.sleep(0.3)
                for i in range(turns):
                    for via, into in ((a, local), (b, forwarded))[:: 1 if i % 2 else -1]:
                        into.append(await _first_update(bot_api, via, message(f"turn {i} via {via.name}")))
                        await asyncio.sleep(0.3)  # the turn's last edits are done
                if a.clis() == [] or b.clis() != []:
                    raise BenchError("the forwarded turns did not all run on A's warm process")
            finally:
                await b.stop()
                await a.stop()
    return local, forwarded


async def failover(env: BenchEnv, redis_url: str, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from the SIGKILL of a conversation's owner to the first update of the next message via B;
    and, for the bound, one cold resume: a new owner's first update of the conversation another instance
    handed over at a graceful stop (no lease to wait for: rounds after the first)."""
    from tests.scale.instances import start_instance
    from tests.telegram.fake_bot_api import FakeBotAPI, private_chat, user

    times: list[float] = []
    resumes: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ccbridge-failover-") as tmp:
        async with FakeBotAPI() as bot_api:
            overrides = {"coordination": {"lease_ttl": FAILOVER_LEASE_TTL, "key_prefix": "bo:"}}
            names = iter(f"i{n}" for n in range(2 * rounds + 2))
            survivor = None
            for n in range(rounds):
                owner = await start_instance(
                    Path(tmp), bot_api, env.cli_env, redis_url, next(names), overrides=overrides
                )
                if survivor is None:
                    survivor = await start_instance(
                        Path(tmp), bot_api, env.cli_env, redis_url, next(names), overrides=overrides
                    )
                    await survivor.logged("webhook server on")
                await owner.logged("webhook server on")
                person = user(42, "Ada")  # the allowlisted user of tests.scale.instances
                chat = private_chat(person)
                answers = len(bot_api.texts(42))
                start = {"update_id": 10_000 + 2 * n, "message": bot_api.new_message(chat, person, f"start {n}")}
                sent, calls = time.monotonic(), len(bot_api.calls)
                await owner.deliver(start)
                await bot_api.wait_for(
                    lambda calls=calls: any(
                        c.method in ("sendMessage", "sendMessageDraft") for c in bot_api.calls[calls:]
                    ),
                    60,
                    "the owner's first update",
                )
                if n > 0:  # the session exists and no process of this owner has it: a cold resume
                    resumes.append(time.monotonic() - sent)
                await bot_api.wait_for(lambda a=answers: len(bot_api.texts(42)) > a, 60, "the owner's answer")
                await asyncio.sleep(0.5)  # its last edits are done
                before = len(bot_api.calls)
                owner.kill()
                killed = time.monotonic()
                await owner.process.wait()
                after = {"update_id": 10_001 + 2 * n, "message": bot_api.new_message(chat, person, f"after {n}")}
                await survivor.deliver(after)
                await bot_api.wait_for(
                    lambda before=before: any(
                        c.method in ("sendMessage", "sendMessageDraft") for c in bot_api.calls[before:]
                    ),
                    120,
                    "the answer through the survivor",
                )
                times.append(time.monotonic() - killed)
                # the survivor owns the conversation now; the next round's owner takes it over again
                await survivor.stop()
                survivor = None
    return times, resumes


def _median(row: Row) -> float:
    return row.first.median


async def run_instances_bench(turns: int, warmup: int, rounds: int, progress: Any = print) -> str:
    from tests.servers import RedisServer

    with tempfile.TemporaryDirectory(prefix="ccbridge-bench-redis-") as tmp:
        redis = RedisServer(Path(tmp)).start()
        try:
            _Redis.url = redis.url
            report, _ = await run_benchmark(turns, warmup, [LocalMemory, LocalRedis], progress=progress)
            async with BenchEnv() as env:
                progress(f"forwarding: two run_bot.py processes, {turns} turns received by each")
                local, forwarded = await forwarding(env, redis.url, turns, warmup)
                progress(f"failover: {rounds} round(s), lease TTL {FAILOVER_LEASE_TTL:g} s")
                failovers, resumes = await failover(env, redis.url, rounds)
        finally:
            redis.stop()
    return markdown(report.rows, local, forwarded, failovers, turns, resumes)


def markdown(
    rows: list[Row],
    local: list[float],
    forwarded: list[float],
    failovers: list[float],
    turns: int,
    resumes: list[float] | None = None,
) -> str:
    by = {r.name: r for r in rows}
    memory, redis = by["local-memory"], by["local-redis"]
    lines = [
        f"| one instance, in-process ({turns} turns) | first update, median (ms) | p90 | final update, median (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in (memory, redis):
        lines.append(f"| {row.label} | {row.first.median:.1f} | {row.first.p90:.1f} | {row.final.median:.1f} |")
    coordination = _median(redis) - _median(memory)
    lines += [
        "",
        f"| two `run_bot.py` processes, Telegram webhooks ({turns} turns each) | first update on the platform, median (ms) | p90 |",
        "| --- | ---: | ---: |",
        f"| received by the owner A | {statistics.median(local):.1f} | {_p90(local):.1f} |",
        f"| received by B, run on A's warm process | {statistics.median(forwarded):.1f} | {_p90(forwarded):.1f} |",
    ]
    forwarding = statistics.median(forwarded) - statistics.median(local)
    lines += [
        "",
        f"- Redis coordination adds {coordination:.1f} ms to the first update "
        f"(target <= {TARGET_COORDINATION_MS:g} ms: {'met' if coordination <= TARGET_COORDINATION_MS else 'MISSED'}).",
        f"- Forwarding (received on B, run on A) adds {forwarding:.1f} ms "
        f"(target <= {TARGET_FORWARD_MS:g} ms: {'met' if forwarding <= TARGET_FORWARD_MS else 'MISSED'}).",
    ]
    if failovers:
        worst = max(failovers)
        lines.append(
            f"- Failover, SIGKILL of the owner -> first update of the next message through another instance: "
            f"median {statistics.median(failovers):.2f} s, worst {worst:.2f} s over {len(failovers)} round(s) "
            f"(lease TTL {FAILOVER_LEASE_TTL:g} s + one cold resume of the session)."
        )
        if resumes:
            bound = FAILOVER_LEASE_TTL + statistics.median(resumes)
            verdict = "met by the median" if statistics.median(failovers) <= bound else "MISSED"
            if worst > bound:  # a cold resume varies from run to run: say so rather than hide it
                verdict += f" (the worst run, {worst:.2f} s, is {worst - bound:.2f} s over)"
            lines.append(
                f"  Target: within the lease TTL plus one cold resume, {FAILOVER_LEASE_TTL:g} s + "
                f"{statistics.median(resumes):.2f} s (a new owner's first update of a handed-over conversation, "
                f"median of {len(resumes)}) = {bound:.2f} s: {verdict}."
            )
    return "\n".join(lines)


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


__all__ = ["SECTION", "run_instances_bench"]
