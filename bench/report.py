"""The benchmark's figures: the table, the target ratios, RESULTS.md."""

from __future__ import annotations

from dataclasses import dataclass

from .timing import Sample, Stats

COMMAND = "python -m bench --write"


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    first: Stats
    final: Stats
    stages: tuple[tuple[str, Stats], ...] = ()  # the first update split in stages, when measured

    @classmethod
    def of(cls, name: str, label: str, samples: list[Sample]) -> Row:
        staged = [s for s in samples if s.stages]
        stages: tuple[tuple[str, Stats], ...] = ()
        if staged and len(staged) == len(samples):
            titles = [title for title, _ in staged[0].stages]
            stages = tuple((title, Stats.of([dict(s.stages)[title] for s in staged])) for title in titles)
        return cls(
            name, label, Stats.of([s.first_ms for s in samples]), Stats.of([s.final_ms for s in samples]), stages
        )


@dataclass(frozen=True)
class Target:
    """``numerator first / denominator first`` compared with ``bound`` (``<=`` or ``>=``)."""

    title: str
    numerator: str
    denominator: str
    op: str
    bound: float

    def ratio(self, rows: dict[str, Row]) -> float | None:
        num, den = rows.get(self.numerator), rows.get(self.denominator)
        if num is None or den is None or den.first.median <= 0:
            return None
        return num.first.median / den.first.median

    def met(self, ratio: float) -> bool:
        return ratio <= self.bound if self.op == "<=" else ratio >= self.bound


TARGETS = [
    Target("warm first / raw SDK first", "ccbridge-warm", "raw-sdk-warm", "<=", 1.3),
    Target("process-per-message first / warm first", "process-per-message", "ccbridge-warm", ">=", 5.0),
]


@dataclass
class Report:
    rows: list[Row]
    turns: int
    warmup: int

    def by_name(self) -> dict[str, Row]:
        return {r.name: r for r in self.rows}

    def verdicts(self) -> list[tuple[Target, float, bool]]:
        rows = self.by_name()
        out = []
        for target in TARGETS:
            ratio = target.ratio(rows)
            if ratio is not None:
                out.append((target, ratio, target.met(ratio)))
        return out

    @property
    def all_met(self) -> bool:
        return all(met for _, _, met in self.verdicts())


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def table(report: Report) -> str:
    """A Markdown table (readable in a terminal too)."""
    lines = [
        "| scenario | first update median | final update median | first p90 | final p90 | first min–max | n |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.label} | {_ms(r.first.median)} | {_ms(r.final.median)} | {_ms(r.first.p90)} | "
            f"{_ms(r.final.p90)} | {_ms(r.first.min)}–{_ms(r.first.max)} | {r.first.n} |"
        )
    return "\n".join(lines)


def stage_lines(report: Report) -> list[str]:
    """Where each staged scenario's first update spends its time (medians per stage)."""
    lines: list[str] = []
    for r in report.rows:
        if not r.stages:
            continue
        lines += [f"{r.label}: first update split in stages (median / p90 ms):", ""]
        lines += ["| stage | median | p90 |", "|---|---:|---:|"]
        lines += [f"| {title} | {_ms(st.median)} | {_ms(st.p90)} |" for title, st in r.stages]
        own = sum(st.median for title, st in r.stages if title.startswith("ccbridge"))
        lines += [
            "",
            f"ccbridge's own work: {_ms(own)} ms (sum of its stage medians) of the {_ms(r.first.median)} ms "
            f"first-update median; the rest is the Claude Code CLI.",
            "",
        ]
    return lines


def verdict_lines(report: Report) -> list[str]:
    lines = [
        f"- {t.title} = {ratio:.2f} (target {t.op} {t.bound:g}): **{'PASS' if met else 'MISS'}**"
        for t, ratio, met in report.verdicts()
    ]
    rows = report.by_name()
    cold, process = rows.get("ccbridge-cold"), rows.get("process-per-message")
    if cold and process and process.first.median > 0:
        lines.append(
            f"- for comparison, no target: cold resume first / process-per-message first = "
            f"{cold.first.median / process.first.median:.2f} (both pay a Claude Code start-up; the warm pool avoids it)"
        )
    return lines


def summary(report: Report) -> str:
    """What ``python -m bench`` prints."""
    head = f"ccbridge latency, ms from message in (median of {report.turns} turns after {report.warmup} warm-up):"
    return "\n".join([head, "", table(report), "", *verdict_lines(report), "", *stage_lines(report)]).rstrip()


def results_markdown(report: Report, info: dict[str, str], date: str) -> str:
    """The whole of bench/RESULTS.md."""
    meta = "\n".join(f"- {k}: {v}" for k, v in info.items())
    return f"""# ccbridge latency benchmark

Measured {date} with `{COMMAND}` ({report.turns} turns per scenario after {report.warmup} warm-up turns
that are not counted). All times in milliseconds from "message in" to the update.

{table(report)}

Targets (on the first-update medians):

{chr(10).join(verdict_lines(report))}

## Where the warm first update's time goes

{chr(10).join(stage_lines(report))}
## Machine and versions

{meta}

{NOTES}"""


NOTES = """## What is measured

- **Message in**: the moment the message is handed over: `Dispatcher.handle(msg)` for ccbridge,
  `client.query()` for the raw SDK, spawning the process for `claude -p`.
- **First update**: ccbridge's first `ReplySink.post` (the sink has `min_edit_interval=0`, so the reply
  engine never holds an update back); the first `text_delta` stream event for the raw SDK and `claude -p`.
- **Final update**: ccbridge's `ReplySink.finalize`; the `ResultMessage` (raw SDK) or `result` line
  (`claude -p`, process exit not waited for).
- **The model** is `tests.fakes.anthropic_api.FakeAnthropicAPI` in its own process on 127.0.0.1, answering
  every request at once with one short text in 3 chunks, so the figures are the bridge's own latency (the
  Claude Code CLI included), not a model's. Throwaway HOME / CLAUDE_CONFIG_DIR,
  `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`; nothing leaves the machine.
- **Scenarios**: *ccbridge warm*: `Agent` (SQLite store) + `Dispatcher`, one conversation whose warm
  client is reused. *ccbridge cold resume*: the same, but the warm client is closed (and its process waited
  for) before every turn, so every turn starts the CLI with `--resume`. *Raw SDK warm client*: one
  `ClaudeSDKClient(include_partial_messages=True)` connected once, started like ccbridge's clients where
  that changes the CLI's per-turn speed: the `claude_code` system prompt preset, no setting sources and a
  `can_use_tool` callback (without one the CLI took ~10-15 ms longer per turn here), so the difference
  between the two warm rows is ccbridge's own work. *`claude -p --resume` per message*: the seeds'
  approach, a fresh `claude -p --resume <session> --output-format stream-json --verbose
  --include-partial-messages "<msg>"` process per message (the session created first with `--session-id`).
- **Method**: every scenario runs its warm-up turns, then the measured turns are interleaved (turn i of
  each scenario, the order rotating every round) so that a slow moment of the machine hits all scenarios
  alike; before each measured turn the runner waits (up to 1 s) for the CPUs to be nearly idle. Medians
  are the figures that count; p90 and min–max show the spread, which on a shared machine is wide.
- **Stages** of the warm first update come from timestamps on the conversation's SDK client (prompt
  written, first text delta read), taken by the benchmark without changing ccbridge.
- Timing is never asserted in CI: `tests/bench/test_bench_smoke.py` only checks that the benchmark runs.
"""


MAIN_SECTIONS = ("## Where the warm first update's time goes", "## Machine and versions", "## What is measured")


def sections_of(results: str) -> dict[str, str]:
    """The ``## `` sections of a RESULTS.md, by title (each with its title line)."""
    found: dict[str, str] = {}
    starts = [i for i in range(len(results)) if results.startswith("## ", i) and (i == 0 or results[i - 1] == "\n")]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(results)
        title = results[start : results.index("\n", start) if "\n" in results[start:] else len(results)]
        found[title] = results[start:end].rstrip("\n") + "\n"
    return found


def with_section(results: str, title: str, body: str) -> str:
    """``results`` with the section ``title`` replaced by ``body`` (or appended); the others kept."""
    block = f"{title}\n\n{body.strip()}\n"
    current = sections_of(results).get(title)
    if current is None:
        return results.rstrip("\n") + "\n\n" + block
    return results.replace(current, block + ("\n" if not results.endswith(current) else ""), 1)


def keep_other_sections(old: str, new: str) -> str:
    """``new`` (the main benchmark's RESULTS.md) followed by the sections other benchmarks wrote into ``old``."""
    kept = [text for title, text in sections_of(old).items() if title not in MAIN_SECTIONS]
    return new.rstrip("\n") + "".join("\n\n" + text.rstrip("\n") for text in kept) + "\n"
