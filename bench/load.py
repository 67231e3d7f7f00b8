"""``python -m bench --load``: many conversations at once against one bot process.

One ``Agent`` + ``Dispatcher`` (as a chat bot drives them: ``Dispatcher.submit`` per message; SQLite
store; a warm pool of 8, so at most 8 Claude Code processes alive besides the ones being closed, 2
starting at a time; re-warming at its default; the Bash sandbox as it is on this machine), the real
Claude Code CLI, the instant fake model.

* **The load**: 200 conversations from 50 users (4 threads each) arrive over 30 s (seeded random
  arrival times); each sends a message when it arrives and a second one a second after its first
  reply is complete — 400 turns. Measured per message: "message in" (just before ``submit``) ->
  first update with the model's text, -> final update; the wait for a process slot (the time spent
  in ``ProcessSlots.acquire``, wrapped by the benchmark); replies counted per message (none lost,
  none doubled). Sampled every 0.1 s: the live Claude Code processes of the bot (and their RSS),
  the warm pool, the processes being closed, the bot's own RSS. Target: the processes alive never
  above the pool size + the ones being closed.
* **Fairness** (first, on the fresh bot): ten new users each send one message — alone (the
  baseline), then right after one user's burst of 50 messages (5 threads x 10) has arrived; twice.
  Target: the burst delays none of the others' first updates (compared rank by rank with the
  baseline) by more than one turn (a new conversation's turn run alone).

Writes ``bench/load-first-update.png`` (first update over time, and the processes alive).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import (
    Agent,
    ApprovalRequest,
    ConversationKey,
    Dispatcher,
    IncomingMessage,
    ReplySink,
    Sections,
    SinkLimits,
    UserRef,
)

from .env import BenchEnv, BenchError, load_average
from .fake_model import REPLY

SECTION = "## Load: 200 conversations from 50 users against one bot"
PLOT = Path(__file__).with_name("load-first-update.png")
THINK_TIME = 1.0  # seconds between a reply and the conversation's next message
SAMPLE_EVERY = 0.1


@dataclass(frozen=True)
class Shape:
    """The load: who arrives when, and the bot's pool (the defaults are the issue's figures)."""

    users: int = 50
    threads: int = 4  # conversations per user
    over: float = 30.0  # seconds over which the conversations arrive
    messages: int = 2  # per conversation
    pool_size: int = 8
    others: int = 10  # new users measured for fairness (0: no fairness phase)
    burst_threads: int = 5
    burst_per_thread: int = 10

    @property
    def conversations(self) -> int:
        return self.users * self.threads


_MARK = REPLY.split(",")[0]  # the start of the model's reply: an update that carries it is the reply's


class LoadSink(ReplySink):
    """One message's chat: timestamps its reply, counts final replies and notices apart."""

    limits = SinkLimits(max_len=4000, min_edit_interval=0.0, typing_interval=0.0)

    def __init__(self, started: float) -> None:
        self.started = started
        self.first: float | None = None  # first update carrying the model's text
        self.final: float | None = None
        self.replies = 0  # final updates carrying the model's text
        self.other_finals: list[str] = []
        self.notices: list[str] = []
        self._handles = 0

    def _seen(self, text: str) -> None:
        if self.first is None and _MARK in text:
            self.first = time.perf_counter()

    async def post(self, text: str) -> Any:
        self._seen(text)
        self._handles += 1
        return self._handles

    async def edit(self, handle: Any, text: str) -> None:
        self._seen(text)

    async def finalize(self, handle: Any | None, text: str) -> None:
        self._seen(text)
        if REPLY in text:
            self.replies += 1
            self.final = self.final or time.perf_counter()
        else:
            self.other_finals.append(text[:200])

    async def notify(self, text: str) -> None:
        self.notices.append(text[:200])

    async def show_approval(self, request: ApprovalRequest) -> None:
        raise BenchError(f"unexpected approval request in a load turn: {request.describe()}")

    async def send_file(self, path: Path, caption: str = "") -> None:
        raise BenchError(f"unexpected file in a load turn: {path}")

    def first_s(self) -> float:
        if self.first is None:
            raise BenchError("a message got no reply")
        return self.first - self.started

    def duration_s(self) -> float:
        if self.final is None:
            raise BenchError("a message got no final reply")
        return self.final - self.started


@dataclass
class Sent:
    key: ConversationKey
    at: float  # seconds since the load began
    sink: LoadSink
    second: bool = False  # the conversation's follow-up message
    process_at: float | None = None  # perf_counter when its Claude Code process began to start (cold turns)

    def queue_wait(self) -> float | None:
        """Message in -> its process began to start: the wait for a slot and a start lane (cold turns)."""
        return None if self.process_at is None else self.process_at - self.sink.started


@dataclass
class Sample:
    at: float
    clis: int
    cli_rss: int  # bytes, all live CLIs
    biggest_cli: int
    pool: int
    idle: int  # pool clients no turn is using
    closing: int  # processes being closed at some moment of the sample (see :meth:`Monitor.run`)
    alive: int  # process slots taken (starting, running or idle; one being closed has given its slot back)
    bot_rss: int


@dataclass
class Monitor:
    """Samples the bot's Claude Code processes and the pool every :data:`SAMPLE_EVERY` s."""

    agent: Agent
    t0: float
    samples: list[Sample] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # seconds in ProcessSlots.acquire, per new process
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def time_starts(self, sent: list[Sent]) -> None:
        """Wrap the runtime's ``_connect`` (on the instance): when each message's process begins to start."""
        runtime = self.agent.runtime
        connect = type(runtime)._connect

        async def timed(warm: Any, request: Any) -> None:
            pending = [s for s in sent if s.key == request.key and s.process_at is None and s.sink.final is None]
            if pending:
                pending[-1].process_at = time.perf_counter()
            await connect(runtime, warm, request)

        runtime._connect = timed  # type: ignore[method-assign]

    def time_slots(self) -> None:
        """Wrap the agent's ``ProcessSlots.acquire`` (on the instance) to time each wait for a process."""
        slots = self.agent.runtime.slots
        acquire = type(slots).acquire

        async def timed(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                await acquire(slots, *args, **kwargs)
            finally:
                self.waits.append(time.perf_counter() - started)

        slots.acquire = timed  # type: ignore[method-assign]

    async def run(self) -> None:
        import psutil

        me = psutil.Process(os.getpid())
        pool, slots = self.agent.runtime.pool, self.agent.runtime.slots
        while not self._stop.is_set():
            # the processes are counted in a thread while the pool goes on: a process being closed when
            # they were counted is being closed still, or has finished closing since ``closed`` was read
            closed = pool.closed
            clis = await asyncio.to_thread(_cli_rss, me)
            self.samples.append(
                Sample(
                    at=time.perf_counter() - self.t0,
                    clis=len(clis),
                    cli_rss=sum(clis),
                    biggest_cli=max(clis, default=0),
                    pool=len(pool),
                    idle=sum(1 for key in pool.keys() if (warm := pool.get(key)) is not None and not warm.busy),
                    closing=pool.closing + pool.closed - closed,
                    alive=slots.alive,
                    bot_rss=me.memory_info().rss,
                )
            )
            try:
                await asyncio.wait_for(self._stop.wait(), SAMPLE_EVERY)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


def _cli_rss(me: Any) -> list[int]:
    """RSS of each live Claude Code process started by this process (blocking: reads /proc).

    A process a CLI forks (to run a tool, git, the sandbox) carries the CLI's command line until it
    execs: it is the CLI's child, not another Claude Code, and is not counted."""
    import psutil

    found: dict[int, tuple[int, int]] = {}  # pid -> (parent pid, RSS)
    for child in me.children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = child.cmdline()
            if cmdline and cmdline[0].endswith("_bundled/claude"):
                found[child.pid] = (child.ppid(), child.memory_info().rss)
        except psutil.Error:
            continue
    return [rss for parent, rss in found.values() if parent not in found]


def _sections(env: BenchEnv, base: Path, pool_size: int) -> Sections:
    return Sections.model_validate(
        {
            "agent": {"env": env.cli_env, "pool_size": pool_size, "sessions_dir": str(base / "sessions")},
            "workspace": {"base_dir": str(base / "workspaces")},
            "store": {"backend": "sqlite", "path": str(base / "ccbridge.db")},
            "access": {"allow_all": True},
        }
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class LoadRun:
    def __init__(self, agent: Agent, dispatcher: Dispatcher) -> None:
        self.agent = agent
        self.dispatcher = dispatcher
        self.sent: list[Sent] = []
        self.t0 = time.perf_counter()

    def send(self, key: ConversationKey, text: str, *, second: bool = False) -> tuple[Sent, asyncio.Task[None]]:
        started = time.perf_counter()
        sent = Sent(key, started - self.t0, LoadSink(started), second)
        self.sent.append(sent)
        msg = IncomingMessage(key, UserRef(key.owner), text, reply=sent.sink, message_id=f"m{len(self.sent)}")
        return sent, self.dispatcher.submit(msg)

    async def conversation(self, key: ConversationKey, arrival: float, messages: int) -> None:
        await asyncio.sleep(max(0.0, self.t0 + arrival - time.perf_counter()))
        for n in range(messages):
            _, task = self.send(key, f"load message {n} in {key}", second=n > 0)
            await task
            if n + 1 < messages:
                await asyncio.sleep(THINK_TIME)


async def settle_pool(agent: Agent) -> None:
    """Close every idle warm process and wait until they are gone (between the phases): nothing of the
    phase before is re-warmed into the next."""
    await agent.prewarm.wait()
    agent.prewarm.forget_evicted()
    agent.runtime.pool.retire_idle()
    for _ in range(400):  # 20 s at most
        if not agent.runtime.pool.closing:
            return
        await asyncio.sleep(0.05)


FAIRNESS_ROUNDS = 2
FAIRNESS_NOTES = """How the others are served: the bursting user runs at most 2 turns at once (the rest wait in the
dispatcher, holding nothing), and a process slot is handed out only when a Claude Code start may begin at
once (2 at a time), to the waiting user with the fewest turns going (round-robin among equals): the
burst's next turns wait until every newcomer has started. What the others still lose is the burst's two
starts already under way when they arrive (the burst came first) and CPU: the bursting user's processes
keep running beside theirs, on 2 cores (compare the alone rows: the same ten starts spread over seconds).
`python -m bench --fairness-ab` compares that order of the line with plain round-robin (see its section):
here the two are within run-to-run noise, as the per-user limit of 2 running turns already keeps the
burst to its share; the order matters where that limit is higher. Starting the bursting user's parallel
processes at a lower CPU priority (`agent.busy_user_nice`) did not win the CPU back either
(`python -m bench --fairness-ab nice`, its section): the burst's starts under way hold the start slots the
newcomers wait for, and run slower at a lower priority, so it is off by default (it can still keep one
user's heavy Bash work, builds and tests, from slowing everyone else's). What would remove the rest — a
user starting at most one Claude Code at a time even on an idle machine — would slow every user who opens
two threads at once, so it is not done."""


async def fairness(
    agent: Agent, dispatcher: Dispatcher, shape: Shape, progress: Callable[[str], Any]
) -> dict[str, float]:
    """The others' first updates alone and right after one user's burst, :data:`FAIRNESS_ROUNDS` times."""
    rounds = 0

    async def others(tag: str) -> list[LoadSink]:
        run = LoadRun(agent, dispatcher)
        keys = [ConversationKey("bench", f"other-{tag}{rounds}-{i}") for i in range(shape.others)]
        await asyncio.gather(*(run.send(key, f"hello {key.owner}")[1] for key in keys))
        return [s.sink for s in run.sent]

    await settle_pool(agent)
    progress("load: fairness, one new conversation's turn alone (3 times): the length of one turn")
    single = []
    for i in range(3):
        run = LoadRun(agent, dispatcher)
        sent, task = run.send(ConversationKey("bench", f"single-{i}"), "hello")
        await task
        single.append(sent.sink.duration_s())
    burst_size = shape.burst_threads * shape.burst_per_thread
    base: list[float] = []
    loaded: list[float] = []
    delays: list[float] = []
    burst_done: list[float] = []
    for rounds in range(FAIRNESS_ROUNDS):
        await settle_pool(agent)
        progress(f"load: fairness round {rounds + 1}: {shape.others} new users at once")
        alone = await others("alone")
        await settle_pool(agent)
        progress(f"load: fairness round {rounds + 1}: the same right after one user's burst of {burst_size} messages")
        burst = LoadRun(agent, dispatcher)
        burst_tasks = [
            burst.send(ConversationKey("bench", f"burster-{rounds}", f"t{t}"), f"burst {t}.{n}")[1]
            for n in range(shape.burst_per_thread)
            for t in range(shape.burst_threads)
        ]
        await asyncio.sleep(0.05)  # the burst has arrived first
        during = await others("burst")
        await asyncio.gather(*burst_tasks)
        check_replies([s.sink for s in burst.sent], "the burst")
        check_replies(alone + during, "the other users")
        a = sorted(s.first_s() for s in alone)
        b = sorted(s.first_s() for s in during)
        base += a
        loaded += b
        delays += [y - x for x, y in zip(a, b, strict=True)]
        burst_done.append(max(s.sink.duration_s() for s in burst.sent))
    return {
        "turn": statistics.median(single),
        "alone median": statistics.median(base),
        "alone worst": max(base),
        "burst median": statistics.median(loaded),
        "burst worst": max(loaded),
        "delay median": statistics.median(delays),
        "delay worst": max(delays),
        "burst done": statistics.median(burst_done),
    }


def check_replies(sinks: list[LoadSink], who: str) -> dict[str, int]:
    """Every message answered exactly once (raises otherwise)."""
    lost = sum(1 for s in sinks if s.replies == 0)
    doubled = sum(1 for s in sinks if s.replies > 1)
    if lost or doubled:
        examples = [s.other_finals[:2] + s.notices[:2] for s in sinks if s.replies != 1][:3]
        raise BenchError(f"{who}: {lost} message(s) without a reply, {doubled} with more than one: {examples}")
    return {"lost": lost, "doubled": doubled}


@dataclass
class LoadResult:
    shape: Shape
    sent: list[Sent]
    samples: list[Sample]  # during the load phase
    waits: list[float]
    elapsed: float
    limit: int  # the process cap: the pool's size
    spawns: int
    evictions: int
    counts: dict[str, int]
    fair: dict[str, float] | None
    load: str = ""  # the machine's load average (1/5/15 min) at the start and at the end
    prewarmed: int = 0  # of the spawns: evicted conversations re-warmed while their users were active

    def over_the_cap(self) -> list[Sample]:
        """The samples with more Claude Code processes alive than the pool size + the ones being closed."""
        return [s for s in self.samples if s.clis > self.limit + s.closing]


async def measure(env: BenchEnv, shape: Shape, progress: Callable[[str], Any] = print) -> LoadResult:
    """Run the load (and the fairness phase) against one bot in ``env``."""
    base = env.dir(f"load-{shape.conversations}")
    load_at_start = load_average()
    async with Agent(_sections(env, base, shape.pool_size)) as agent:
        dispatcher = Dispatcher(agent)
        rng = random.Random(17)
        keys = [
            ConversationKey("bench", f"user-{u}", f"t{t}") for u in range(shape.users) for t in range(shape.threads)
        ]
        arrivals = sorted(rng.uniform(0, shape.over) for _ in keys)
        rng.shuffle(keys)
        fair = await fairness(agent, dispatcher, shape, progress) if shape.others else None
        await settle_pool(agent)
        pool = agent.runtime.pool
        spawns0, evictions0, prewarmed0 = pool.spawns, pool.evictions, pool.prewarmed
        run = LoadRun(agent, dispatcher)
        monitor = Monitor(agent, run.t0)
        monitor.time_slots()
        monitor.time_starts(run.sent)
        sampler = asyncio.create_task(monitor.run())
        progress(
            f"load: {len(keys)} conversations from {shape.users} users arriving over {shape.over:.0f} s, "
            f"{shape.messages} messages each, warm pool {shape.pool_size}"
        )
        ticker = asyncio.create_task(_report_progress(run, len(keys) * shape.messages, progress))
        try:
            await asyncio.gather(*(run.conversation(k, a, shape.messages) for k, a in zip(keys, arrivals, strict=True)))
        finally:
            ticker.cancel()
        elapsed = time.perf_counter() - run.t0
        spawns, evictions, prewarmed = pool.spawns - spawns0, pool.evictions - evictions0, pool.prewarmed - prewarmed0
        waits = list(monitor.waits)
        monitor.stop()
        await sampler
        limit = agent.runtime.slots.limit
    counts = check_replies([s.sink for s in run.sent], "the load")
    samples = [s for s in monitor.samples if s.at <= elapsed]
    load = f"{load_at_start} at the start, {load_average()} at the end"
    return LoadResult(shape, run.sent, samples, waits, elapsed, limit, spawns, evictions, counts, fair, load, prewarmed)


async def run_load_bench(shape: Shape | None = None, progress: Callable[[str], Any] = print) -> str:
    async with BenchEnv() as env:
        result = await measure(env, shape or Shape(), progress)
    await asyncio.to_thread(plot, result)
    return markdown(result)


async def _report_progress(run: LoadRun, total: int, progress: Callable[[str], Any]) -> None:
    while True:
        await asyncio.sleep(10)
        done = sum(1 for s in run.sent if s.sink.final is not None)
        progress(f"load: {done} of {total} turns answered after {time.perf_counter() - run.t0:.0f} s")


def plot(result: LoadResult, path: Path = PLOT) -> None:
    """The PNG: first update by the time the message came in; the processes alive over time (blocking)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sent, samples = result.sent, result.samples
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, height_ratios=[3, 2])
    for second, colour, label in ((False, "tab:blue", "first message"), (True, "tab:orange", "follow-up")):
        chosen = [s for s in sent if s.second is second]
        top.scatter([s.at for s in chosen], [s.sink.first_s() for s in chosen], s=9, c=colour, label=label)
    top.set_ylabel("first update (s after message in)")
    top.set_title(
        f"{result.shape.conversations} conversations, {len(sent)} turns, one bot, warm pool "
        f"{result.shape.pool_size} (real Claude Code CLI, instant fake model)",
        fontsize=10,
    )
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    at = [s.at for s in samples]
    bottom.plot(at, [s.clis for s in samples], label="live Claude Code processes", color="tab:red")
    bottom.plot(at, [s.pool for s in samples], label="warm pool", color="tab:green")
    bottom.plot(at, [s.closing for s in samples], label="being closed", color="tab:gray")
    bottom.plot(
        at,
        [result.limit + s.closing for s in samples],
        label="pool size + being closed (the cap)",
        color="black",
        linestyle=":",
        linewidth=0.8,
    )
    cap = f"pool size ({result.limit})"
    bottom.axhline(result.limit, linestyle="--", color="black", linewidth=0.8, label=cap)
    bottom.set_xlabel("seconds since the load began (when the message came in)")
    bottom.set_ylabel("processes")
    bottom.legend(loc="lower right", fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


def markdown(result: LoadResult) -> str:
    shape, sent, samples = result.shape, result.sent, result.samples
    firsts = [s.sink.first_s() for s in sent]
    durations = [s.sink.duration_s() for s in sent]
    waited = [w for w in result.waits if w > 0.005]
    queued = [w for w in (s.queue_wait() for s in sent) if w is not None]
    peak = max(samples, key=lambda s: s.clis)
    over = result.over_the_cap()
    rows = [
        ("first update (s)", firsts),
        ("turn duration, message in -> final update (s)", durations),
        (
            f"queue wait, message in -> its Claude Code process starts (s; the {len(queued)} turns that started one)",
            queued or [0.0],
        ),
        ("of which waiting for a process slot, the starts that waited (s)", waited or [0.0]),
    ]
    lines = [
        f"{shape.conversations} conversations from {shape.users} users ({shape.threads} threads each) arriving "
        f"over {shape.over:.0f} s, {shape.messages} messages each ({len(sent)} turns; the next message "
        f"{THINK_TIME:g} s after a reply), warm pool {shape.pool_size} (at most {result.limit} Claude Code "
        "processes alive besides the ones being closed, 2 starting at a time), at most 2 running turns per user.",
        "",
        "| | p50 | p95 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for title, values in rows:
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        lines.append(f"| {title} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {max(values):.2f} |")
    lines += [
        "",
        f"- throughput: {len(sent)} turns in {result.elapsed:.0f} s = **{len(sent) / result.elapsed:.2f} "
        f"turns/s** ({result.spawns} Claude Code starts, {result.prewarmed} of them re-warms of evicted "
        f"conversations, {result.evictions} idle processes closed to make room); {len(waited)} of "
        f"{len(result.waits)} starts waited for a process slot.",
        f"- replies: {len(sent)} messages, each answered exactly once ({result.counts['lost']} lost, "
        f"{result.counts['doubled']} doubled).",
        f"- Claude Code processes alive: peak {peak.clis} (pool {peak.pool}, {peak.closing} being closed, "
        f"{peak.alive} slots taken), never above the pool size ({result.limit}) + the ones being closed "
        f"(at most {max(s.closing for s in samples)}): {'met' if not over else f'MISSED ({len(over)} samples above)'}"
        f"; the warm pool peaked at {max(s.pool for s in samples)} (size {shape.pool_size}), process slots "
        f"taken at {max(s.alive for s in samples)}; over the load, process slots taken "
        f"{statistics.median(s.alive for s in samples):.0f} and processes alive "
        f"{statistics.median(s.clis for s in samples):.0f} (medians of the samples).",
        f"- peak RSS: the bot {_mb(max(s.bot_rss for s in samples))} (at the start {_mb(samples[0].bot_rss)}); "
        f"its Claude Code processes {_mb(max(s.cli_rss for s in samples))} together, "
        f"{_mb(max(s.biggest_cli for s in samples))} the largest one.",
        "",
        f"- the machine's load average (1/5/15 min): {result.load} (2 cores, shared with other jobs).",
        "",
        f"![first update over time]({PLOT.name})",
    ]
    if result.spawns >= 0.8 * len(sent):
        lines += [
            "",
            f"What limits it here: {result.spawns} of the {len(sent)} turns started a Claude Code process of "
            f"their own. The conversations arrive {shape.conversations / shape.over:.1f} per second; this "
            "machine starts Claude Code about as fast as the throughput above (2 starts at a time, each about "
            "a CPU-second with the sandbox), so a queue builds at once; with more conversations than the pool "
            "holds, an idle warm process is closed for a waiting turn once the pool is full, so a follow-up "
            "can find its process gone. The cap and the pool hold (see the processes alive); the queue is the "
            "machine's start-up capacity, not the pool's size.",
        ]
    fair = result.fair
    if fair is not None:
        burst = shape.burst_threads * shape.burst_per_thread
        verdict = "met" if fair["delay worst"] <= fair["turn"] else "MISSED"
        lines += [
            "",
            f"Fairness (measured first, on the fresh bot; {FAIRNESS_ROUNDS} rounds): {shape.others} new users' "
            f"first updates, alone and right after one user's burst of {burst} messages ({shape.burst_threads} "
            "threads; that user runs at most 2 turns at once):",
            "",
            "| first update of the others (s) | median | worst |",
            "| --- | ---: | ---: |",
            f"| alone | {fair['alone median']:.2f} | {fair['alone worst']:.2f} |",
            f"| right after the burst | {fair['burst median']:.2f} | {fair['burst worst']:.2f} |",
            f"| delay (rank by rank) | {fair['delay median']:.2f} | {fair['delay worst']:.2f} |",
            "",
            f"Target: the burst delays the others' first updates by at most one turn ({fair['turn']:.2f} s, a "
            f"new conversation's turn alone, median of 3): {verdict} (worst delay {fair['delay worst']:.2f} s, "
            f"median {fair['delay median']:.2f} s; the burst itself took {fair['burst done']:.1f} s to answer).",
            "",
            FAIRNESS_NOTES,
        ]
    return "\n".join(lines)


async def run(args: Any, progress: Callable[[str], Any] = print) -> str:
    return await run_load_bench(progress=progress)
