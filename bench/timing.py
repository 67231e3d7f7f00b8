"""Clocks and statistics: one sample per turn, summarized as median / p90 / min / max."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import ApprovalRequest, ReplySink, SinkLimits

from .env import BenchError

now = time.perf_counter


@dataclass(frozen=True)
class Sample:
    """One turn: milliseconds from "message in" to the first and to the final update."""

    first_ms: float
    final_ms: float
    stages: tuple[tuple[str, float], ...] = ()  # optional split of first_ms (ms per stage, in order)


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    p90: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        if not values:
            raise BenchError("no samples")
        ordered = sorted(values)
        p90 = statistics.quantiles(ordered, n=10, method="inclusive")[-1] if len(ordered) > 1 else ordered[0]
        return cls(len(ordered), statistics.median(ordered), p90, ordered[0], ordered[-1])


class TurnClock:
    """Timestamps of one turn; ``first`` / ``final`` keep the earliest mark."""

    def __init__(self) -> None:
        self.started = now()
        self.first: float | None = None
        self.final: float | None = None
        self.marks: dict[str, float] = {}  # named moments in between (see Sample.stages)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, now())

    def mark_first(self) -> None:
        if self.first is None:
            self.first = now()

    def mark_final(self) -> None:
        if self.final is None:
            self.final = now()
            self.mark_first()

    def sample(self) -> Sample:
        if self.first is None or self.final is None:
            raise BenchError("the turn ended without a first and a final update")
        return Sample((self.first - self.started) * 1000, (self.final - self.started) * 1000)

    def staged(self, names: list[tuple[str, str]], last: str) -> Sample:
        """The sample with ``first_ms`` split at the marks ``names`` ((mark, stage title) in order).

        ``last`` titles the stage from the final mark to the first update. Without every mark,
        the sample has no stages.
        """
        sample = self.sample()
        if any(mark not in self.marks for mark, _ in names) or self.first is None:
            return sample
        stages: list[tuple[str, float]] = []
        t = self.started
        for mark, title in names:
            stages.append((title, (self.marks[mark] - t) * 1000))
            t = self.marks[mark]
        stages.append((last, (self.first - t) * 1000))
        return Sample(sample.first_ms, sample.final_ms, tuple(stages))


class TimingSink(ReplySink):
    """A chat that timestamps the reply: first ``post`` = first update, ``finalize`` = final update.

    ``min_edit_interval=0`` so the reply engine's coalescing does not delay the final update.
    """

    limits = SinkLimits(max_len=4000, min_edit_interval=0.0, typing_interval=0.0)

    def __init__(self, clock: TurnClock) -> None:
        self.clock = clock
        self.text = ""
        self._handles = 0

    async def post(self, text: str) -> Any:
        self.clock.mark_first()
        self.text = text
        self._handles += 1
        return self._handles

    async def edit(self, handle: Any, text: str) -> None:
        self.text = text

    async def finalize(self, handle: Any | None, text: str) -> None:
        self.clock.mark_final()
        self.text = text

    async def show_approval(self, request: ApprovalRequest) -> None:
        raise BenchError(f"unexpected approval request in a benchmark turn: {request.describe()}")

    async def send_file(self, path: Path, caption: str = "") -> None:
        raise BenchError(f"unexpected file in a benchmark turn: {path}")


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def settle(max_busy: float = 0.15, window: float = 0.1, limit: float = 1.0) -> None:
    """Wait until the machine is (nearly) idle, so one turn's leftovers don't slow the next.

    A CLI keeps working for a while after it answered (start-up chores of a fresh
    process, exiting); the next measured turn should not pay for that. Waits at
    most ``limit`` seconds; where CPU load can't be read, waits one ``window``.
    """
    deadline = time.monotonic() + limit
    before = await asyncio.to_thread(_cpu_times)
    while True:
        await asyncio.sleep(window)
        after = await asyncio.to_thread(_cpu_times)
        if before is None or after is None:
            return
        busy, total = after[0] - before[0], after[1] - before[1]
        if total <= 0 or busy / total <= max_busy or time.monotonic() >= deadline:
            return
        before = after
