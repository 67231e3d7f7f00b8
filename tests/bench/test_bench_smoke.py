"""The latency benchmark runs end to end (a few turns); no timing is asserted here, ever."""

from __future__ import annotations

import pytest

from bench.__main__ import parse_args
from bench.report import TARGETS, results_markdown, summary
from bench.runner import run_benchmark, select
from bench.scenarios import SCENARIOS


@pytest.mark.agent
async def test_every_scenario_yields_positive_figures_and_a_report() -> None:
    report, info = await run_benchmark(turns=2, warmup=1)

    assert [r.name for r in report.rows] == ["ccbridge-warm", "ccbridge-cold", "raw-sdk-warm", "process-per-message"]
    for row in report.rows:
        assert row.first.n == row.final.n == 2
        assert 0 < row.first.min <= row.first.median <= row.first.max
        assert 0 < row.final.min <= row.final.median <= row.final.max
        assert row.first.median <= row.final.median
    warm = report.by_name()["ccbridge-warm"]
    assert [title.split(":")[0] for title, _ in warm.stages] == ["ccbridge", "Claude Code CLI + fake model", "ccbridge"]
    assert all(stats.median >= 0 for _, stats in warm.stages)

    verdicts = report.verdicts()
    assert [t.title for t, _, _ in verdicts] == [t.title for t in TARGETS]
    assert all(ratio > 0 for _, ratio, _ in verdicts)

    printed = summary(report)
    for row in report.rows:
        assert row.label in printed
    assert printed.count("PASS") + printed.count("MISS") == len(TARGETS)

    markdown = results_markdown(report, info, "2000-01-01 00:00 UTC")
    assert "python -m bench --write" in markdown and "2000-01-01" in markdown
    assert info["claude-agent-sdk"] in markdown and info["Claude Code CLI"] in markdown


@pytest.mark.parametrize(
    "argv",
    [
        ["--turns", "0"],
        ["--warmup", "0"],
        ["--write", "--turns", "19"],
        ["--write", "--only", "raw-sdk-warm"],
        ["--only", "no-such-scenario"],
    ],
)
def test_bad_options_are_refused_with_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_default_options_measure_twenty_turns_of_every_scenario() -> None:
    args = parse_args([])
    assert (args.turns, args.warmup, args.write, args.check) == (20, 2, False, False)
    assert select(args.only) == SCENARIOS
    assert select(["raw-sdk-warm"]) == [s for s in SCENARIOS if s.name == "raw-sdk-warm"]
    with pytest.raises(ValueError, match="unknown scenario"):
        select(["nope"])


def test_the_fairness_ab_report_has_a_row_per_order_and_their_medians() -> None:
    from bench.fairness_ab import markdown

    def row(delay: float) -> dict[str, float]:
        return {"turn": 0.9, "delay median": delay, "delay worst": delay + 1, "burst done": 12.0}

    report = markdown(
        {"the fewest turns first": [row(1.0), row(3.0), row(2.0)], "round-robin": [row(1.5)]}, "order of the line"
    )
    assert "| order of the line | one turn (s) |" in report
    assert "| the fewest turns first | 0.90, 0.90, 0.90 | 1.00, 3.00, 2.00 | 2.00, 4.00, 3.00 |" in report
    assert "| round-robin | 0.90 | 1.50 | 2.50 | 12.00 |" in report
    assert "2.00 s the fewest turns first, 1.50 s round-robin." in report


def test_fairness_ab_measures_the_order_by_default_or_the_cpu_priority() -> None:
    from bench.__main__ import parse_args
    from bench.fairness_ab import EXPERIMENTS, section

    assert parse_args(["--fairness-ab"]).fairness_ab == "order"
    assert section(parse_args(["--fairness-ab"])) == "## Fairness: the order of the process line"
    nice = parse_args(["--fairness-ab", "nice"])
    assert section(nice) == EXPERIMENTS["nice"].section != EXPERIMENTS["order"].section
    assert list(EXPERIMENTS["nice"].variants) == ["at the bot's priority", "at nice 10"]
