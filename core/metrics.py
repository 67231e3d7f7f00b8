"""Prometheus metrics (prometheus-client), kept in one registry per :class:`Metrics`.

An :class:`~core.agent.Agent` records into the ``Metrics`` it is given, or into one of its own,
so tests running several agents in one process never mix their numbers; ``ccbridge`` gives all
the bots of a process one ``Metrics``, served at ``/metrics`` by the HTTP API and the ops port
(:mod:`core.ops`). Every series carries the ``bot`` label (the agent's name); the platform-side
ones also ``platform``, a label value the caller passes in (core never branches on it).

==============================================  =========  ===========================================
``ccbridge_turns_total``                        counter    bot, outcome: ok | interrupted | error |
                                                           unavailable | timeout | internal | store
``ccbridge_turn_duration_seconds``              histogram  bot: from the turn's start to its end
``ccbridge_first_update_seconds``               histogram  bot: from the turn's start to its first
                                                           text or tool call
``ccbridge_cost_usd_total``                     counter    bot
``ccbridge_turns_running``                      gauge      bot: turns holding their conversation
``ccbridge_turns_queued``                       gauge      bot: turns waiting behind another turn of
                                                           their conversation
``ccbridge_turns_waiting_for_process``          gauge      bot: turns waiting for a free Claude Code
                                                           process (``agent.pool_size``)
``ccbridge_pool_clients``                       gauge      bot: warm Claude Code processes
``ccbridge_pool_spawns_total``                  counter    bot
``ccbridge_pool_evictions_total``               counter    bot: idle processes closed for room
``ccbridge_model_retries_total``                counter    bot, status: the model API failed (529, 429,
                                                           5xx) and Claude Code retried
``ccbridge_approvals_total``                    counter    bot, outcome: allow_once | allow_session |
                                                           deny | timeout | withdrawn
``ccbridge_platform_rate_limits_total``         counter    bot, platform
``ccbridge_platform_rate_limit_wait_seconds``   counter    bot, platform: the waits they asked for
``ccbridge_platform_errors_total``              counter    bot, platform: reply operations refused
``ccbridge_budget_refusals_total``              counter    bot, period: day | month
``ccbridge_store_errors_total``                 counter    bot, operation, kind: unavailable | fenced |
                                                           error
==============================================  =========  ===========================================
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import Fenced, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from .agent import Agent
    from .store import ConversationStore

PREFIX = "ccbridge_"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: the store's coroutines whose failures are counted
STORE_OPERATIONS = (
    "ping",
    "get",
    "put",
    "delete",
    "find_session",
    "list",
    "put_turn",
    "turns",
    "mark_interrupted",
    "claim_key",
    "put_meta",
    "get_meta",
    "delete_meta",
    "list_meta",
    "add_meta",
    "store_id",
)


class Metrics:
    """A registry and every ccbridge metric in it; :meth:`bot` gives one bot's view."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter(f"{PREFIX}turns", "Turns that ended, by outcome.", ["bot", "outcome"], registry=r)
        self.turn_duration = Histogram(
            f"{PREFIX}turn_duration_seconds",
            "Seconds from a turn's start to its end.",
            ["bot"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.first_update = Histogram(
            f"{PREFIX}first_update_seconds",
            "Seconds from a turn's start to its first text or tool call.",
            ["bot"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cost = Counter(f"{PREFIX}cost_usd", "What the turns cost, in USD.", ["bot"], registry=r)
        self.model_retries = Counter(
            f"{PREFIX}model_retries",
            "Model API calls that failed and were retried, by HTTP status.",
            ["bot", "status"],
            registry=r,
        )
        self.approvals = Counter(
            f"{PREFIX}approvals", "Approval requests answered, by outcome.", ["bot", "outcome"], registry=r
        )
        self.rate_limits = Counter(
            f"{PREFIX}platform_rate_limits",
            "Rate limits a chat platform answered with.",
            ["bot", "platform"],
            registry=r,
        )
        self.rate_limit_wait = Counter(
            f"{PREFIX}platform_rate_limit_wait_seconds",
            "Seconds the chat platforms' rate limits asked to wait.",
            ["bot", "platform"],
            registry=r,
        )
        self.platform_errors = Counter(
            f"{PREFIX}platform_errors", "Reply operations a chat platform refused.", ["bot", "platform"], registry=r
        )
        self.budget_refusals = Counter(
            f"{PREFIX}budget_refusals",
            "Messages refused because a user's budget was spent.",
            ["bot", "period"],
            registry=r,
        )
        self.store_errors = Counter(
            f"{PREFIX}store_errors", "Store operations that failed.", ["bot", "operation", "kind"], registry=r
        )
        self._agents: weakref.WeakSet[Agent] = weakref.WeakSet()
        self.registry.register(_LiveState(self._agents))

    def bot(self, name: str) -> BotMetrics:
        return BotMetrics(self, name)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (for a ``/metrics`` route)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class PlatformReport(Protocol):
    """What the reply engine reports about a chat platform (see :meth:`BotMetrics.platform`)."""

    def rate_limited(self, retry_after: float) -> None: ...

    def failed(self) -> None: ...


class _Unreported:
    def rate_limited(self, retry_after: float) -> None:
        pass

    def failed(self) -> None:
        pass


UNREPORTED: PlatformReport = _Unreported()


@dataclass(frozen=True)
class _PlatformCounters:
    rate_limits: Any
    waited: Any
    errors: Any

    def rate_limited(self, retry_after: float) -> None:
        self.rate_limits.inc()
        self.waited.inc(max(0.0, retry_after))

    def failed(self) -> None:
        self.errors.inc()


class BotMetrics:
    """One bot's metrics: its label value bound in."""

    def __init__(self, metrics: Metrics, bot: str) -> None:
        self.metrics = metrics
        self.bot = bot

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def render(self) -> tuple[bytes, str]:
        return self.metrics.render()

    def watch(self, agent: Agent) -> None:
        """Report ``agent``'s live state (running turns, its pool) at every scrape."""
        self.metrics._agents.add(agent)

    def turn_ended(self, outcome: str, duration: float, cost_usd: float | None) -> None:
        m = self.metrics
        m.turns.labels(self.bot, outcome).inc()
        m.turn_duration.labels(self.bot).observe(max(0.0, duration))
        if cost_usd:
            m.cost.labels(self.bot).inc(max(0.0, cost_usd))

    def first_update(self, seconds: float) -> None:
        self.metrics.first_update.labels(self.bot).observe(max(0.0, seconds))

    def model_retry(self, status: int | None) -> None:
        self.metrics.model_retries.labels(self.bot, str(status or "unknown")).inc()

    def approval(self, outcome: str) -> None:
        self.metrics.approvals.labels(self.bot, outcome).inc()

    def budget_refused(self, period: str) -> None:
        self.metrics.budget_refusals.labels(self.bot, period).inc()

    def platform(self, platform: str) -> PlatformReport:
        """What the reply engine reports for ``platform`` (a label value)."""
        m = self.metrics
        return _PlatformCounters(
            m.rate_limits.labels(self.bot, platform),
            m.rate_limit_wait.labels(self.bot, platform),
            m.platform_errors.labels(self.bot, platform),
        )

    def store_error(self, operation: str, exc: StoreError) -> None:
        kind = "fenced" if isinstance(exc, Fenced) else "unavailable" if isinstance(exc, StoreUnavailable) else "error"
        self.metrics.store_errors.labels(self.bot, operation, kind).inc()

    def count_store_errors(self, store: ConversationStore) -> None:
        """Count the :class:`~core.errors.StoreError` of every store operation of ``store``.

        Each coroutine is wrapped on the instance (the class stays as it is, and is looked up
        at each call): backends need nothing, and a test may still patch either.
        """
        for name in STORE_OPERATIONS:
            if name in vars(store) or not callable(getattr(type(store), name, None)):
                continue
            setattr(store, name, _counted(store, name, self))


def _counted(store: ConversationStore, name: str, metrics: BotMetrics) -> Any:
    async def operation(*args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(type(store), name)(store, *args, **kwargs)
        except StoreError as exc:
            metrics.store_error(name, exc)
            raise

    operation.__name__ = operation.__qualname__ = name
    return operation


_LIVE: tuple[tuple[str, type[Metric], str, str], ...] = (
    ("running", GaugeMetricFamily, "turns_running", "Turns holding their conversation."),
    ("queued", GaugeMetricFamily, "turns_queued", "Turns waiting behind another turn of their conversation."),
    ("waiting", GaugeMetricFamily, "turns_waiting_for_process", "Turns waiting for a free Claude Code process."),
    ("clients", GaugeMetricFamily, "pool_clients", "Warm Claude Code processes."),
    ("spawns", CounterMetricFamily, "pool_spawns", "Claude Code processes started."),
    ("evictions", CounterMetricFamily, "pool_evictions", "Idle Claude Code processes closed to make room."),
)


class _LiveState(Collector):
    """Gauges and counters read from the agents at scrape time (summed per bot name)."""

    def __init__(self, agents: weakref.WeakSet[Agent]) -> None:
        self.agents = agents

    def collect(self) -> Iterator[Metric]:
        values: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for agent in list(self.agents):
            bot = values[agent.metrics.bot]
            conversations, pool = agent.conversations, agent.runtime.pool
            running = len(conversations.running())
            bot["running"] += running
            bot["queued"] += max(0, conversations.observer.active - running) if conversations.observer else 0
            bot["waiting"] += agent.runtime.slots.waiting
            bot["clients"] += len(pool)
            bot["spawns"] += pool.spawns
            bot["evictions"] += pool.evictions
        for field, family_type, name, documentation in _LIVE:
            family = family_type(f"{PREFIX}{name}", documentation, labels=["bot"])
            for bot_name, bot_values in sorted(values.items()):
                family.add_metric([bot_name], bot_values[field])
            yield family

    def describe(self) -> Iterator[Metric]:
        for _, family_type, name, documentation in _LIVE:
            yield family_type(f"{PREFIX}{name}", documentation, labels=["bot"])
