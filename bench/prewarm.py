"""``python -m bench --prewarm``: the first turn after a restart, pre-warmed, against a warm turn.

One conversation (SQLite store) gets its session; then, ``--turns`` times, the bot restarts:

* with ``agent.prewarm: 1``: ``Agent.start()`` is timed (pre-warming must not lengthen it), the
  background pre-warm is waited for (how long it took after start-up is shown), then the
  **first turn after the restart** is measured (message in -> first update / final update through
  ``Dispatcher.handle``), one more turn runs uncounted, and a **warm turn** (the third on the process)
  is measured;
* without pre-warming (``agent.prewarm: 0``): start-up and the first turn after the restart, which
  starts Claude Code with ``--resume`` (a cold turn), for comparison;
* the raw SDK (no ccbridge, the main benchmark's raw client): a freshly connected client's first
  query against its third, which shows what the Claude Code CLI itself does on its first query.

Target: pre-warmed first turn <= 1.3x the warm turn (first-update medians).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from core import Agent, ConversationKey, Dispatcher, IncomingMessage, Sections, UserRef

from .env import BenchEnv, BenchError
from .fake_model import REPLY
from .scenarios import RawSDKWarm
from .timing import Sample, Stats, TimingSink, TurnClock, now, settle

SECTION = "## Re-warm after a restart"
TARGET = 1.3
KEY = ConversationKey("bench", "returning-user")


def _sections(env: BenchEnv, base: Path, prewarm: int) -> Sections:
    return Sections.model_validate(
        {
            "agent": {"env": env.cli_env, "pool_size": 4, "prewarm": prewarm},
            "workspace": {"base_dir": str(base / "workspaces")},
            "store": {"backend": "sqlite", "path": str(base / "ccbridge.db")},
            "access": {"allow_all": True},
        }
    )


async def _turn(dispatcher: Dispatcher, i: int) -> Sample:
    await settle()
    clock = TurnClock()
    sink = TimingSink(clock)
    await dispatcher.handle(IncomingMessage(KEY, UserRef(KEY.owner), f"after the restart {i}", reply=sink))
    if REPLY not in sink.text:
        raise BenchError(f"prewarm turn {i}: unexpected reply {sink.text[:300]!r}")
    return clock.sample()


async def measure(rounds: int, progress: Callable[[str], None] = lambda line: None) -> dict[str, list[float]]:
    """Milliseconds per restart: ``prewarmed`` / ``warm`` / ``cold`` first update (``*_final``: final update),
    ``start_prewarm`` / ``start_plain`` (``Agent.start()``), ``ready`` (start-up -> the pre-warm done)."""
    figures: dict[str, list[float]] = {}

    def add(name: str, sample: Sample) -> None:
        figures.setdefault(name, []).append(sample.first_ms)
        figures.setdefault(f"{name}_final", []).append(sample.final_ms)

    async with BenchEnv() as env:
        base = env.dir("prewarm")
        async with Agent(_sections(env, base, 0)) as agent:  # the session: created, then one more turn
            dispatcher = Dispatcher(agent)
            for i in range(2):
                await _turn(dispatcher, i)
        for r in range(rounds):
            if r % 5 == 0:
                progress(f"prewarm: restarts {r + 1}-{min(r + 5, rounds)} of {rounds}")
            await settle()
            started = now()
            agent = await Agent(_sections(env, base, 1)).start()
            figures.setdefault("start_prewarm", []).append((now() - started) * 1000)
            try:
                await agent.prewarm.wait()
                figures.setdefault("ready", []).append((now() - started) * 1000)
                pool = agent.runtime.pool
                if pool.prewarmed != 1 or pool.get(KEY) is None:
                    raise BenchError("the conversation was not pre-warmed after the restart")
                dispatcher = Dispatcher(agent)
                add("prewarmed", await _turn(dispatcher, 3 * r))
                await _turn(dispatcher, 3 * r + 1)
                add("warm", await _turn(dispatcher, 3 * r + 2))
                if pool.spawns != 1:
                    raise BenchError(f"the turns after the restart started {pool.spawns - 1} more process(es)")
            finally:
                await agent.close()
            await settle()
            started = now()
            agent = await Agent(_sections(env, base, 0)).start()
            figures.setdefault("start_plain", []).append((now() - started) * 1000)
            try:
                add("cold", await _turn(Dispatcher(agent), 3 * r + 3))
            finally:
                await agent.close()
            raw = RawSDKWarm(env)
            await raw.start()
            try:
                await settle()
                add("raw_first", await raw.turn(3 * r))
                await raw.turn(3 * r + 1)
                await settle()
                add("raw_warm", await raw.turn(3 * r + 2))
            finally:
                await raw.close()
    return figures


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def section(figures: dict[str, list[float]], rounds: int) -> str:
    st = {name: Stats.of(values) for name, values in figures.items()}
    ratio = st["prewarmed"].median / st["warm"].median
    verdict = "PASS" if ratio <= TARGET else "MISSED"
    rows = [
        ("first turn after a restart, pre-warmed (`agent.prewarm: 1`)", "prewarmed"),
        ("warm turn (the third on that process)", "warm"),
        ("first turn after a restart, no pre-warm (Claude Code starts with `--resume`)", "cold"),
        ("raw SDK: first query of a freshly connected client", "raw_first"),
        ("raw SDK: third query of that client", "raw_warm"),
    ]
    lines = [
        f"{rounds} restarts; milliseconds from `Dispatcher.handle(msg)` to the first / final update.",
        "",
        "| turn | first update median | p90 | final update median | p90 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, name in rows:
        first, final = st[name], st[f"{name}_final"]
        lines.append(f"| {label} | {_ms(first.median)} | {_ms(first.p90)} | {_ms(final.median)} | {_ms(final.p90)} |")
    lines += [
        "",
        f"- pre-warmed first / warm first = {ratio:.2f} (target <= {TARGET:g}): **{verdict}**",
        f"- for comparison: no pre-warm first / warm first = {st['cold'].median / st['warm'].median:.1f}; "
        f"raw SDK first query / third query = {st['raw_first'].median / st['raw_warm'].median:.2f}",
        f"- `Agent.start()` median: {_ms(st['start_prewarm'].median)} ms with pre-warming, "
        f"{_ms(st['start_plain'].median)} ms without (pre-warming runs in the background); the pre-warmed "
        f"client was ready {_ms(st['ready'].median)} ms (median) after start-up began",
        "- the turns after a pre-warmed restart started no process (checked every round)",
    ]
    if verdict == "MISSED":
        raw = st["raw_first"].median / st["raw_warm"].median
        lines += [
            "",
            f"What prevents the target: Claude Code's own first query. A freshly started CLI does one-off work "
            f"on its first message (it assembles the system prompt and the tool definitions and opens its "
            f"connection to the API before sending the request) that its later queries skip: the raw SDK, "
            f"without ccbridge, shows the same: a freshly connected client's first query takes "
            f"{_ms(st['raw_first'].median)} ms, {raw:.2f}x its third (ccbridge's pre-warmed first turn: "
            f"{_ms(st['prewarmed'].median)} ms). Pre-warming removes the process "
            f"start ({_ms(st['cold'].median)} -> {_ms(st['prewarmed'].median)} ms); the CLI offers no way to do "
            f"that first-query work ahead of a message without a model request (`get_context_usage` does part of "
            f"it, but sends ~27 token-counting requests to the API per process, which pre-warming must not cost).",
        ]
    return "\n".join(lines)


async def run(args: argparse.Namespace, progress: Callable[[str], None] = lambda line: None) -> str:
    """The section for ``--prewarm`` (``--turns`` restarts)."""
    return section(await measure(args.turns, progress), args.turns)
