"""The load scenario of ``python -m bench --load``, scaled down: the warm pool and the process cap hold.

Real Claude Code CLIs against the fake model; nothing here is timed. More conversations than the pool
holds arrive at once, each sends two messages: the live Claude Code processes (counted from the
bot's process tree every 0.1 s) never exceed the cap (pool size + 2), the warm pool keeps no idle
client beyond its size, and every message is answered exactly once.
"""

from __future__ import annotations

import pytest

from bench.env import BenchEnv
from bench.load import Shape, check_replies, measure


@pytest.mark.agent
async def test_the_pool_never_exceeds_its_size_under_the_load_scenario() -> None:
    shape = Shape(users=3, threads=2, over=1.0, messages=2, pool_size=2, others=0)
    async with BenchEnv() as env:
        result = await measure(env, shape, progress=lambda line: None)

    assert result.limit == shape.pool_size + 2
    assert result.samples, "the monitor took no sample"
    assert max(s.clis for s in result.samples) <= result.limit
    assert max(s.alive for s in result.samples) <= result.limit
    # the warm pool keeps at most pool_size clients; beyond it only while every client runs a turn
    # (on the extra processes the cap allows), the first one to go idle is closed at once
    assert all(s.pool <= shape.pool_size or s.idle == 0 for s in result.samples)
    assert max(s.pool for s in result.samples) <= result.limit
    # the scenario did press on the pool: more starts than it holds, idle processes closed for others
    assert result.spawns > shape.pool_size
    assert result.evictions > 0
    assert max(s.clis for s in result.samples) >= shape.pool_size  # processes were counted at all

    sent = result.sent
    assert len(sent) == shape.conversations * shape.messages
    assert len({s.key for s in sent}) == shape.conversations
    assert check_replies([s.sink for s in sent], "the load") == {"lost": 0, "doubled": 0}
    assert all(s.sink.replies == 1 for s in sent)


def test_the_long_benchmarks_are_flags_of_python_m_bench() -> None:
    from bench.__main__ import parse_args

    for flag in ("--cold-start", "--load", "--idle"):
        args = parse_args([flag])
        assert getattr(args, flag.lstrip("-").replace("-", "_")) is True
    defaults = parse_args([])
    assert not (defaults.cold_start or defaults.load or defaults.idle)  # the quick default run stays as it was
