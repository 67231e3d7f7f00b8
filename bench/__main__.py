"""``python -m bench``: measure ccbridge's reply latency and print the figures.

Options: ``--turns N`` (default 20), ``--warmup N`` (default 2), ``--only NAME ...``,
``--write`` (rewrite bench/RESULTS.md; needs >= 20 turns and every scenario),
``--check`` (exit 1 when a target is missed; timing never fails CI, so CI does not use it).
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
from .report import results_markdown, summary
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
    args = parser.parse_args(argv)
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first turn creates the session)")
    if args.write and args.turns < MIN_TURNS_FOR_RESULTS:
        parser.error(f"--write needs --turns >= {MIN_TURNS_FOR_RESULTS} (medians of fewer turns are not published)")
    if args.write and args.only:
        parser.error("--write needs every scenario (drop --only)")
    return args


async def amain(args: argparse.Namespace) -> int:
    report, info = await run_benchmark(
        args.turns, args.warmup, select(args.only), progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(summary(report))
    if args.write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        await asyncio.to_thread(RESULTS.write_text, results_markdown(report, info, date))
        print(f"\nwrote {RESULTS}")
    if args.check and not report.all_met:
        return 1
    return 0


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
