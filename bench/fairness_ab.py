"""``python -m bench --fairness-ab``: does the order of the process line change what a burst costs others?

The fairness phase of ``bench/load.py`` (ten new users alone, then right after one user's burst of 50
messages), run against one bot with the two orders of :class:`~core.runtime.processes.ProcessSlots`
interleaved round by round: the waiting user with the fewest turns going first (ccbridge's order), and
plain round-robin by user (``load=None``). The figures are the delays of the others' first updates, rank
by rank, against their first updates alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from core import Agent
from core.dispatcher import Dispatcher

from .env import BenchEnv
from .load import Shape, _sections, fairness

SECTION = "## Fairness: the order of the process line"
ROUNDS = 3
ORDERS = ("fewest turns first", "round-robin")


async def run(args: Any, progress: Callable[[str], Any] = print) -> str:
    shape = Shape()
    found: dict[str, list[dict[str, float]]] = {order: [] for order in ORDERS}
    async with BenchEnv() as env, Agent(_sections(env, env.dir("fairness-ab"), shape.pool_size)) as agent:
        dispatcher = Dispatcher(agent)
        for r in range(ROUNDS):
            for order in ORDERS if r % 2 == 0 else ORDERS[::-1]:
                agent.runtime.slots.load = agent.runtime.pool.turns_of if order == ORDERS[0] else None
                progress(f"fairness A/B: round {r + 1} of {ROUNDS}, {order}")
                found[order].append(await fairness(agent, dispatcher, shape, lambda _: None))
        agent.runtime.slots.load = agent.runtime.pool.turns_of
    return markdown(found)


def markdown(found: dict[str, list[dict[str, float]]]) -> str:
    def cells(key: str, rows: list[dict[str, float]]) -> str:
        return ", ".join(f"{r[key]:.2f}" for r in rows)

    lines = [
        f"The load bench's fairness phase, {ROUNDS} times with each order of the process line, interleaved on one "
        "bot (each time: one turn alone 3 times, then 2 rounds of ten newcomers alone and right after a burst).",
        "",
        "| order of the line | one turn (s) | delay median (s) | delay worst (s) | burst answered in (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for order, rows in found.items():
        lines.append(
            f"| {order} | {cells('turn', rows)} | {cells('delay median', rows)} | {cells('delay worst', rows)} "
            f"| {cells('burst done', rows)} |"
        )
    medians = {o: statistics.median(r["delay median"] for r in rows) for o, rows in found.items()}
    lines += [
        "",
        f"Median of the delay medians: {medians[ORDERS[0]]:.2f} s with the fewest turns first, "
        f"{medians[ORDERS[1]]:.2f} s with round-robin.",
    ]
    return "\n".join(lines)
