"""Runs the scenarios side by side in one offline environment and collects the report.

Every scenario first runs its warm-up turns; the measured turns are then
interleaved (turn i of each scenario, in an order that rotates every round), so
a slow moment of the machine hits every scenario alike instead of one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

from .env import BenchEnv, load_average, machine_info
from .report import Report, Row
from .scenarios import SCENARIOS, Scenario
from .timing import Sample, settle


def select(names: list[str] | None) -> list[type[Scenario]]:
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [known[n] for n in names]


async def run_benchmark(
    turns: int,
    warmup: int = 2,
    scenarios: list[type[Scenario]] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> tuple[Report, dict[str, str]]:
    """Run the scenarios; returns the report and the machine / version info."""
    if turns < 1 or warmup < 1:
        raise ValueError("turns and warmup must be at least 1 (the first turn creates the session)")
    async with BenchEnv() as env, AsyncExitStack() as stack:
        info = await machine_info(env.cli)
        info["load average at start (1/5/15 min)"] = load_average()
        running: list[Scenario] = []
        for cls in scenarios or SCENARIOS:
            scenario = cls(env)
            await scenario.start()
            stack.push_async_callback(scenario.close)
            running.append(scenario)
        for scenario in running:
            progress(f"warming up: {scenario.label} ({warmup} turns)")
            for i in range(warmup):
                await scenario.turn(i)
        samples: dict[str, list[Sample]] = {s.name: [] for s in running}
        for n in range(turns):
            if n % 5 == 0:
                progress(f"measuring: turns {n + 1}-{min(n + 5, turns)} of {turns}")
            shift = n % len(running)
            for scenario in running[shift:] + running[:shift]:
                await settle()
                samples[scenario.name].append(await scenario.turn(warmup + n))
    info["load average at end (1/5/15 min)"] = load_average()
    rows = [Row.of(s.name, s.label, samples[s.name]) for s in running]
    return Report(rows, turns, warmup), info
