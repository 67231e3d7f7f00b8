"""``python -m bench``: measure ccbridge's reply latency and print the figures.

Options: ``--turns N`` (default 20), ``--warmup N`` (default 2), ``--only NAME ...``,
``--write`` (rewrite bench/RESULTS.md; needs >= 20 turns and every scenario),
``--check`` (exit 1 when a target is missed; timing never fails CI, so CI does not use it),
``--stores`` (instead: each conversation store's share of a turn and a cold resume from the
store, on real Redis / PostgreSQL servers; with ``--write``, its section of RESULTS.md),
``--instances`` (instead: coordination, forwarding and failover of several instances on a real
Redis; ``--rounds N`` failovers; with ``--write``, its section of RESULTS.md),
``--burst`` (instead: 50 new conversations at once with and without the process caps),
``--cold-start`` (instead: one Claude Code start with ccbridge's options, option by option, against a
bare ``claude -p --resume``; ``--turns N`` starts each), ``--load`` (instead: 200 conversations from
50 users over 30 s against one bot, warm pool of 8; writes bench/load-first-update.png),
``--fairness-ab [order|nice]`` (instead: the load bench's fairness phase with both orders of the process
line, or with a busy user's parallel processes at a lower CPU priority and not), ``--idle``
(instead: 10,000 idle conversations in the SQLite store: RSS, /status, listing, the next turn),
``--sign-of-life`` (instead: message in -> first sink call, warm and cold, ``--turns N`` of each; the
quick default run measures it too, with a few turns, printed only), ``--prewarm`` (instead: the first
turn after a restart with pre-warming against a warm turn, ``--turns N`` restarts).
With ``--write``, each of these rewrites its own section of RESULTS.md only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from .env import SCRUBBED_ENV
from .report import keep_other_sections, results_markdown, summary
from .runner import run_benchmark, select
from .scenarios import SCENARIOS

MIN_TURNS_FOR_RESULTS = 20
RESULTS = Path(__file__).with_name("RESULTS.md")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="ccbridge latency benchmark (offline).")
    parser.add_argument("--turns", type=int, default=20, help="measured turns per scenario (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted turns first (default 2)")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=[s.name for s in SCENARIOS], help="run only these scenarios"
    )
    parser.add_argument("--write", action="store_true", help=f"rewrite {RESULTS.name} with the figures")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("-v", "--verbose", action="store_true", help="log ccbridge's debug output")
    parser.add_argument(
        "--stores", action="store_true", help="measure the conversation stores instead (bench/stores.py)"
    )
    parser.add_argument(
        "--instances",
        action="store_true",
        help="measure coordination, forwarding and failover of several instances instead (bench/instances.py)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="failover rounds for --instances (default 3)")
    parser.add_argument(
        "--burst",
        action="store_true",
        help="measure 50 new conversations at once with and without the process caps instead (bench/burst.py)",
    )
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="measure a Claude Code start with ccbridge's options, one by one, against the bare CLI instead "
        "(bench/coldstart.py)",
    )
    parser.add_argument(
        "--load", action="store_true", help="200 conversations from 50 users over 30 s against one bot (bench/load.py)"
    )
    parser.add_argument(
        "--fairness-ab",
        nargs="?",
        const="order",
        choices=["order", "nice"],
        help="the load bench's fairness phase with two variants interleaved: both orders of the process line "
        "(order, the default) or a busy user's processes at a lower CPU priority and not (nice) (bench/fairness_ab.py)",
    )
    parser.add_argument(
        "--idle", action="store_true", help="10,000 idle conversations in the store: RSS and latency (bench/idle.py)"
    )
    parser.add_argument(
        "--sign-of-life",
        action="store_true",
        help="measure message in -> first sink call (the typing indicator), warm and cold (bench/sign_of_life.py)",
    )
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="measure the first turn after a restart with pre-warming against a warm turn (bench/prewarm.py)",
    )
    args = parser.parse_args(argv)
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first turn creates the session)")
    if args.write and args.turns < MIN_TURNS_FOR_RESULTS:
        parser.error(f"--write needs --turns >= {MIN_TURNS_FOR_RESULTS} (medians of fewer turns are not published)")
    if args.write and args.only and not (args.stores or args.instances):
        parser.error("--write needs every scenario (drop --only)")
    return args


async def stores_main(args: argparse.Namespace) -> int:
    from .stores import run_store_bench, with_section

    section = await run_store_bench(args.turns, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(section)
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = await asyncio.to_thread(RESULTS.read_text)
        command = f"python -m bench --stores --turns {args.turns} --write"
        await asyncio.to_thread(RESULTS.write_text, with_section(text, section, command, date))
        print(f"\nwrote the stores section of {RESULTS}")
    return 1 if args.check and "MISSED" in section else 0


async def instances_main(args: argparse.Namespace) -> int:
    from .instances import SECTION, run_instances_bench
    from .report import with_section

    section = await run_instances_bench(
        args.turns, args.warmup, args.rounds, progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(section)
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = f"python -m bench --instances --turns {args.turns} --rounds {args.rounds} --write"
        body = f"Measured {date} with `{command}` (see `bench/instances.py` for what is timed).\n\n{section}"
        text = await asyncio.to_thread(RESULTS.read_text)
        await asyncio.to_thread(RESULTS.write_text, with_section(text, SECTION, body))
        print(f"\nwrote the instances section of {RESULTS}")
    return 1 if args.check and "MISSED" in section else 0


async def burst_main(args: argparse.Namespace) -> int:
    from .burst import SECTION, run_burst_bench
    from .report import with_section

    section = await run_burst_bench(progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(section)
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = f"Measured {date} with `python -m bench --burst --write` (see `bench/burst.py`).\n\n{section}"
        text = await asyncio.to_thread(RESULTS.read_text)
        await asyncio.to_thread(RESULTS.write_text, with_section(text, SECTION, body))
        print(f"\nwrote the burst section of {RESULTS}")
    return 1 if args.check and "MISSED" in section else 0


async def section_main(args: argparse.Namespace, name: str, command: str) -> int:
    """Run one of the long benchmarks (``bench/<name>.py``: ``run(args, progress)``, and ``SECTION`` or
    ``section(args)``: the heading of its part of RESULTS.md)."""
    import importlib

    from .report import with_section

    module = importlib.import_module(f"bench.{name}")
    section = await module.run(args, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(section)
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = f"Measured {date} with `{command}` (see `bench/{name}.py`).\n\n{section}"
        text = await asyncio.to_thread(RESULTS.read_text)
        heading = module.section(args) if hasattr(module, "section") else module.SECTION
        await asyncio.to_thread(RESULTS.write_text, with_section(text, heading, body))
        print(f"\nwrote the {name} section of {RESULTS}")
    return 1 if args.check and "MISSED" in section else 0


async def amain(args: argparse.Namespace) -> int:
    if args.cold_start:
        return await section_main(args, "coldstart", f"python -m bench --cold-start --turns {args.turns} --write")
    if args.load:
        return await section_main(args, "load", "python -m bench --load --write")
    if args.fairness_ab:
        return await section_main(args, "fairness_ab", f"python -m bench --fairness-ab {args.fairness_ab} --write")
    if args.idle:
        return await section_main(args, "idle", "python -m bench --idle --write")
    if args.sign_of_life:
        return await section_main(args, "sign_of_life", f"python -m bench --sign-of-life --turns {args.turns} --write")
    if args.prewarm:
        return await section_main(args, "prewarm", f"python -m bench --prewarm --turns {args.turns} --write")
    if args.burst:
        return await burst_main(args)
    if args.stores:
        return await stores_main(args)
    if args.instances:
        return await instances_main(args)
    report, info = await run_benchmark(
        args.turns, args.warmup, select(args.only), progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(summary(report))
    sign_of_life = await quick_sign_of_life(args)
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        old = await asyncio.to_thread(RESULTS.read_text) if RESULTS.exists() else ""
        await asyncio.to_thread(RESULTS.write_text, keep_other_sections(old, results_markdown(report, info, date)))
        print(f"\nwrote {RESULTS} (the sections of --stores / --instances / --load kept)")
    if args.check and (not report.all_met or "MISSED" in sign_of_life):
        return 1
    return 0


async def quick_sign_of_life(args: argparse.Namespace) -> str:
    """The quick run's sign-of-life figures (a few turns, printed; ``--sign-of-life --write`` records them)."""
    from . import sign_of_life

    if args.only:
        return ""
    section = await sign_of_life.run(args, progress=lambda line: print(line, file=sys.stderr, flush=True))
    turns = min(args.turns, sign_of_life.QUICK_TURNS)
    print(f"\n{sign_of_life.SECTION[3:]} ({turns} turns of each; not written to {RESULTS.name}):\n")
    print(section)
    return section


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in SCRUBBED_ENV:  # the CLI must only ever see the fake model's credentials
        os.environ.pop(name, None)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
