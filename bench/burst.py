"""``python -m bench --burst``: 50 new conversations at once, with the process caps and without.

Without caps every new conversation starts its own Claude Code process at once (what ccbridge did
before the process caps, the pool size and ``agent.max_spawns``): on a small machine they all compete for the
CPUs and every reply waits for the slowest start. With the caps (the defaults: as many processes as
the pool's size, 2 starting at a time) the turns queue fairly and each runs on a process that started
without a crowd. Measured: the time until every conversation is answered, and the first update of
each (median, p90, worst), with the peak number of live Claude Code processes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from core import Agent, ConversationKey, Dispatcher, IncomingMessage, Sections, UserRef

from .env import BenchEnv, BenchError
from .fake_model import REPLY
from .timing import TimingSink, TurnClock

SECTION = "## A burst of new conversations: process caps"
CONVERSATIONS = 50


def _clis(base: Path) -> int:
    """Live Claude Code processes of this run (their private config directories are under ``base``)."""
    count = 0
    marker = str(base).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z" and b"claude_agent_sdk/_bundled/claude" in cmdline:
                try:
                    if marker in (proc / "environ").read_bytes():
                        count += 1
                except OSError:
                    continue
    return count


async def burst(env: BenchEnv, name: str, agent_settings: dict[str, Any], n: int) -> dict[str, float]:
    base = env.dir(name)
    sections = Sections.model_validate(
        {
            "agent": {"env": env.cli_env, "sessions_dir": str(base / "sessions"), **agent_settings},
            "workspace": {"base_dir": str(base / "workspaces")},
            "store": {"backend": "sqlite", "path": str(base / "ccbridge.db")},
            "access": {"allow_all": True, "max_running_per_user": n},
        }
    )
    async with Agent(sections) as agent:
        dispatcher = Dispatcher(agent)
        peak = 0
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, await asyncio.to_thread(_clis, base))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        clocks = [TurnClock() for _ in range(n)]
        sinks = [TimingSink(clock) for clock in clocks]
        started = time.monotonic()

        async def one(i: int) -> None:
            key = ConversationKey("bench", f"user-{i}")
            await dispatcher.handle(IncomingMessage(key, UserRef(f"user-{i}"), f"hello {i}", reply=sinks[i]))
            if REPLY not in sinks[i].text:
                raise BenchError(f"{name}: conversation {i} got {sinks[i].text[:200]!r}")

        await asyncio.gather(*(one(i) for i in range(n)))
        total = time.monotonic() - started
        done.set()
        await sampler
        firsts = sorted(c.sample().first_ms / 1000 for c in clocks)
        return {
            "all answered (s)": total,
            "first update, median (s)": statistics.median(firsts),
            "first update, p90 (s)": statistics.quantiles(firsts, n=10)[-1],
            "first update, worst (s)": firsts[-1],
            "peak live CLIs": float(peak),
        }


async def run_burst_bench(n: int = CONVERSATIONS, progress: Any = print) -> str:
    async with BenchEnv() as env:
        progress(f"burst: {n} new conversations at once, with the default caps")
        capped = await burst(env, "capped", {"pool_size": 8}, n)
        progress(f"burst: {n} new conversations at once, uncapped (a process each)")
        uncapped = await burst(env, "uncapped", {"pool_size": n, "max_spawns": n}, n)
    lines = [
        f"| {n} new conversations at once | capped (pool 8: 8 processes, 2 starting at a time) | uncapped |",
        "| --- | ---: | ---: |",
    ]
    for metric in capped:
        fmt = "{:.0f}" if metric.startswith("peak") else "{:.2f}"
        lines.append(f"| {metric} | {fmt.format(capped[metric])} | {fmt.format(uncapped[metric])} |")
    verdict = "met" if capped["all answered (s)"] < uncapped["all answered (s)"] else "MISSED"
    lines += [
        "",
        f"Target: with the caps the burst finishes sooner than uncapped: {verdict} "
        f"({capped['all answered (s)']:.1f} s vs {uncapped['all answered (s)']:.1f} s).",
    ]
    return "\n".join(lines)
