"""``python -m bench --sign-of-life``: message in -> the first sink call of any kind, warm and cold.

The user's sign of life: the typing / working indicator, which the dispatcher shows as soon as a
message is accepted, before a warm client is leased or a Claude Code process started. Measured
through ``Dispatcher.handle`` on an ``Agent`` with a SQLite store, as the main benchmark's ccbridge
scenarios: a warm conversation (its client reused) and a cold one (its client closed, and its
process waited for, before every turn: each turn starts Claude Code with ``--resume``). The first
update (first ``post``) is shown beside it for scale. Part of the quick default run too
(``python -m bench``), with at most :data:`QUICK_TURNS` turns of each and a shorter wait for an
idle machine between turns (~15 s in all).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core import Agent, ConversationKey, Dispatcher, IncomingMessage, Sections, UserRef

from .env import BenchEnv, BenchError
from .fake_model import REPLY
from .timing import Stats, TimingSink, TurnClock, now, settle

SECTION = "## Sign of life: message in -> first sink call"
TARGET_MS = 50.0
QUICK_TURNS = 5  # per kind, in the quick default run
SIGN = "sign of life"


class SignSink(TimingSink):
    """A timing sink that also marks its first call of any kind."""

    async def typing(self) -> None:
        self.clock.mark(SIGN)

    async def notify(self, text: str) -> None:
        self.clock.mark(SIGN)
        await super().notify(text)

    async def post(self, text: str) -> Any:
        self.clock.mark(SIGN)
        return await super().post(text)

    async def edit(self, handle: Any, text: str) -> None:
        self.clock.mark(SIGN)
        await super().edit(handle, text)

    async def finalize(self, handle: Any | None, text: str) -> None:
        self.clock.mark(SIGN)
        await super().finalize(handle, text)


async def measure(
    turns: int, progress: Callable[[str], None] = lambda line: None, *, settle_limit: float = 1.0
) -> dict[str, dict[str, Stats]]:
    """``{"warm" | "cold": {"sign": Stats, "first": Stats}}`` in ms, after one uncounted turn of each.

    Before each turn the machine is given up to ``settle_limit`` seconds to become idle.
    """
    async with BenchEnv() as env:
        base = env.dir("sign-of-life")
        sections = Sections.model_validate(
            {
                "agent": {"env": env.cli_env, "pool_size": 4},
                "workspace": {"base_dir": str(base / "workspaces")},
                "store": {"backend": "sqlite", "path": str(base / "ccbridge.db")},
                "access": {"allow_all": True},
            }
        )
        samples: dict[str, dict[str, list[float]]] = {kind: {"sign": [], "first": []} for kind in ("warm", "cold")}
        async with Agent(sections) as agent:
            dispatcher = Dispatcher(agent)
            keys = {kind: ConversationKey("bench", f"{kind}-user") for kind in samples}

            async def turn(kind: str, i: int) -> tuple[float, float]:
                key = keys[kind]
                if kind == "cold":
                    warm = agent.runtime.pool.get(key)
                    if warm is not None:
                        await warm.disconnect()  # its process gone first, so it does not compete for the CPU
                    agent.runtime.forget(key)
                await settle(limit=settle_limit)
                clock = TurnClock()
                sink = SignSink(clock)
                await dispatcher.handle(IncomingMessage(key, UserRef(key.owner), f"sign of life {i}", reply=sink))
                if REPLY not in sink.text or SIGN not in clock.marks or clock.first is None:
                    raise BenchError(f"sign of life, {kind} turn {i}: unexpected reply {sink.text[:300]!r}")
                return (clock.marks[SIGN] - clock.started) * 1000, (clock.first - clock.started) * 1000

            for kind in samples:  # the first turn creates the session: not counted
                await turn(kind, 0)
            for i in range(1, turns + 1):
                if i % 5 == 1:
                    progress(f"sign of life: turns {i}-{min(i + 4, turns)} of {turns} (warm and cold)")
                for kind in samples:
                    sign, first = await turn(kind, i)
                    samples[kind]["sign"].append(sign)
                    samples[kind]["first"].append(first)
        return {kind: {k: Stats.of(v) for k, v in figures.items()} for kind, figures in samples.items()}


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def section(figures: dict[str, dict[str, Stats]], turns: int) -> str:
    lines = [
        f"Milliseconds from `Dispatcher.handle(msg)` to the sink's first call of any kind (the typing "
        f"indicator), {turns} turns of each after one uncounted; target <= {TARGET_MS:g} ms for both.",
        "",
        "| turn | sign of life median | p90 | max | first update median (for scale) | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for kind, label in (("warm", "warm (client reused)"), ("cold", "cold (Claude Code started with --resume)")):
        sign, first = figures[kind]["sign"], figures[kind]["first"]
        verdict = "PASS" if sign.median <= TARGET_MS else "MISSED"
        lines.append(
            f"| {label} | {_ms(sign.median)} | {_ms(sign.p90)} | {_ms(sign.max)} | {_ms(first.median)} | {verdict} |"
        )
    lines += [
        "",
        "The indicator goes out once gating is decided (allowlist, commands), before files are downloaded, "
        "a warm client is leased or Claude Code started, and also when the turn waits behind another; "
        "`tests/core/test_sign_of_life.py` proves the order (no timing in tests).",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace, progress: Callable[[str], None] = lambda line: None) -> str:
    """The section for ``--sign-of-life`` (``--turns`` of each kind; the quick run: at most QUICK_TURNS)."""
    quick = not getattr(args, "sign_of_life", False)
    turns = min(args.turns, QUICK_TURNS) if quick else args.turns
    started = now()
    figures = await measure(turns, progress, settle_limit=0.3 if quick else 1.0)
    progress(f"sign of life measured in {now() - started:.0f} s")
    return section(figures, turns)
