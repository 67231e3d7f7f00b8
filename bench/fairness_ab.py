"""``python -m bench --fairness-ab [order|nice]``: what changes what a burst costs the other users?

The fairness phase of ``bench/load.py`` (ten new users alone, then right after one user's burst of 50
messages), run against one bot with two variants interleaved round by round:

* ``order``: the order of :class:`~core.runtime.processes.ProcessSlots`' line: the waiting user with
  the fewest turns going first (ccbridge's order) against plain round-robin by user (``load=None``);
* ``nice``: the processes a user starts beside another turn of theirs at the same priority as
  everyone's (ccbridge's default) against a lower CPU priority (``agent.busy_user_nice: 10``).

The figures are the delays of the others' first updates, rank by rank, against their first updates alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import Agent
from core.dispatcher import Dispatcher

from .env import BenchEnv
from .load import Shape, _sections, fairness

ROUNDS = 3


@dataclass(frozen=True)
class Experiment:
    section: str
    what: str  # the table's first column
    variants: dict[str, Callable[[Agent], None]]  # name -> sets the bot up for it (the first: ccbridge's default)


def _order(fewest_first: bool) -> Callable[[Agent], None]:
    def setup(agent: Agent) -> None:
        agent.runtime.slots.load = agent.runtime.pool.turns_of if fewest_first else None

    return setup


def _nice(value: int) -> Callable[[Agent], None]:
    def setup(agent: Agent) -> None:
        agent.runtime.settings = agent.runtime.settings.model_copy(update={"busy_user_nice": value})

    return setup


EXPERIMENTS = {
    "order": Experiment(
        "## Fairness: the order of the process line",
        "order of the line",
        {"the fewest turns first": _order(True), "round-robin": _order(False)},
    ),
    "nice": Experiment(
        "## Fairness: a busy user's processes at a lower CPU priority",
        "a user's parallel processes",
        {"at the bot's priority": _nice(0), "at nice 10": _nice(10)},
    ),
}


def _experiment(args: Any) -> Experiment:
    return EXPERIMENTS[getattr(args, "fairness_ab", None) or "order"]


def section(args: Any) -> str:
    """The heading of RESULTS.md's section that ``--write`` rewrites for ``args``."""
    return _experiment(args).section


async def run(args: Any, progress: Callable[[str], Any] = print) -> str:
    experiment = _experiment(args)
    shape = Shape()
    names = list(experiment.variants)
    found: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    async with BenchEnv() as env, Agent(_sections(env, env.dir("fairness-ab"), shape.pool_size)) as agent:
        dispatcher = Dispatcher(agent)
        for r in range(ROUNDS):
            for name in names if r % 2 == 0 else names[::-1]:
                experiment.variants[name](agent)
                progress(f"fairness A/B: round {r + 1} of {ROUNDS}, {name}")
                found[name].append(await fairness(agent, dispatcher, shape, lambda _: None))
        experiment.variants[names[0]](agent)
    return markdown(found, experiment.what)


def markdown(found: dict[str, list[dict[str, float]]], what: str = "order of the line") -> str:
    def cells(key: str, rows: list[dict[str, float]]) -> str:
        return ", ".join(f"{r[key]:.2f}" for r in rows)

    lines = [
        f"The load bench's fairness phase, {ROUNDS} times with each variant, interleaved on one "
        "bot (each time: one turn alone 3 times, then 2 rounds of ten newcomers alone and right after a burst).",
        "",
        f"| {what} | one turn (s) | delay median (s) | delay worst (s) | burst answered in (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rows in found.items():
        lines.append(
            f"| {name} | {cells('turn', rows)} | {cells('delay median', rows)} | {cells('delay worst', rows)} "
            f"| {cells('burst done', rows)} |"
        )
    medians = {name: statistics.median(r["delay median"] for r in rows) for name, rows in found.items()}
    lines += ["", "Median of the delay medians: " + ", ".join(f"{m:.2f} s {name}" for name, m in medians.items()) + "."]
    return "\n".join(lines)
