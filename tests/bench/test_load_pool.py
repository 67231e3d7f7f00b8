"""The load scenario of ``python -m bench --load``, scaled down: the pool never exceeds its size.

Real Claude Code CLIs against the fake model; nothing here is timed. More conversations than the pool
holds arrive at once, each sends two messages: the warm pool never holds more clients than its size,
the process slots taken (clients busy or idle, and those starting) never exceed it either, the live
Claude Code processes (counted from the bot's process tree every 0.1 s) are never above the pool size +
the ones being closed, and every message is answered exactly once.
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

    assert result.limit == shape.pool_size  # the cap is the pool's size, nothing on top
    samples = result.samples
    assert samples, "the monitor took no sample"
    assert max(s.pool for s in samples) <= shape.pool_size
    assert max(s.alive for s in samples) <= shape.pool_size
    assert all(s.clis <= shape.pool_size + s.closing for s in samples), [
        (s.clis, s.pool, s.closing) for s in samples if s.clis > shape.pool_size + s.closing
    ]
    assert result.over_the_cap() == []
    # the scenario did press on the pool: more starts than it holds, idle processes closed for others
    assert result.spawns > shape.pool_size
    assert result.evictions > 0
    assert max(s.clis for s in samples) >= shape.pool_size  # processes were counted at all

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
