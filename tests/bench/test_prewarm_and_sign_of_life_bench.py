"""The sign-of-life and re-warm benchmarks run end to end (one turn / restart); no timing is asserted."""

from __future__ import annotations

import pytest

from bench.__main__ import parse_args
from bench.prewarm import measure as measure_prewarm
from bench.prewarm import section as prewarm_section
from bench.sign_of_life import SECTION, measure, section


@pytest.mark.agent
async def test_the_sign_of_life_bench_yields_figures_for_warm_and_cold_turns() -> None:
    figures = await measure(1, settle_limit=0.1)
    assert set(figures) == {"warm", "cold"}
    for kind in figures.values():
        assert kind["sign"].n == kind["first"].n == 1
        assert 0 < kind["sign"].median <= kind["first"].median  # the indicator comes before the reply
    text = section(figures, 1)
    assert "warm (client reused)" in text and "cold" in text and text.count("PASS") + text.count("MISSED") == 2
    assert SECTION.startswith("## ")


@pytest.mark.agent
async def test_the_prewarm_bench_restarts_and_measures_every_row() -> None:
    figures = await measure_prewarm(1)
    for name in ("prewarmed", "warm", "cold", "raw_first", "raw_warm", "start_prewarm", "start_plain", "ready"):
        assert len(figures[name]) == 1 and figures[name][0] > 0
    text = prewarm_section(figures, 1)
    assert "pre-warmed first / warm first" in text and ("PASS" in text or "MISSED" in text)


def test_the_flags_are_known() -> None:
    assert parse_args(["--sign-of-life"]).sign_of_life and parse_args(["--prewarm"]).prewarm
    assert not parse_args([]).sign_of_life and not parse_args([]).prewarm
