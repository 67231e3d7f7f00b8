#!/usr/bin/env python3
"""Run ccbridge bots: ``python run_bot.py --config config.yaml [--bot NAME ...] [--check]``.

With no bot configured (or no config file at all) the console bot runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from bots import Bot, load_bot_class
from core import Agent, AppConfig, CCBridgeError, ConfigError, load_config
from core.credentials import HELP as CREDENTIALS_HELP
from core.credentials import credentials_source
from core.runtime import probe_sandbox

log = logging.getLogger("ccbridge")

DEFAULT_CONFIG = Path("config.yaml")
CONSOLE = "console"


@dataclass
class Plan:
    """One bot to run: its name, class, validated settings and agent settings."""

    name: str
    bot_class: type[Bot]
    bot: Bot


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run Claude Code chat bots (ccbridge).")
    parser.add_argument("--config", "-c", type=Path, help="config file (default: ./config.yaml if present)")
    parser.add_argument(
        "--bot",
        "-b",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this bot (repeatable; default: every enabled bot)",
    )
    parser.add_argument("--check", action="store_true", help="validate the config and say what would run")
    parser.add_argument("--log-level", help="override log_level from the config (DEBUG, INFO, ...)")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> AppConfig:
    path = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    return load_config(path)


def plan(config: AppConfig, names: list[str]) -> list[Plan]:
    """Validate and build every bot that should run (nothing is started yet)."""
    if names:
        unknown = [n for n in names if n not in config.bots and n != CONSOLE]
        if unknown:
            raise ConfigError(
                f"no bot named {', '.join(unknown)} (configured: {', '.join(config.bots) or 'none'})", key="--bot"
            )
    else:
        names = [n for n, entry in config.bots.items() if entry.enabled] or [CONSOLE]
    plans = []
    for name in names:
        entry = config.bots.get(name)
        kind = entry.kind if entry else CONSOLE
        bot_class = load_bot_class(kind, name=name)
        settings = bot_class.parse_settings(name, entry.settings if entry else {})
        sections = bot_class.adjust_sections(config.for_bot(name) if entry else config.resolved())
        plans.append(Plan(name, bot_class, bot_class(name, Agent(sections), settings)))
    return plans


def check_credentials(plans: list[Plan]) -> str | None:
    """The credentials source, or None when no bot could authenticate."""
    sources = {
        credentials_source(agent.env, setting_sources=agent.setting_sources)
        for agent in (p.bot.agent.sections.agent for p in plans)
    }
    return None if None in sources else ", ".join(sorted(s for s in sources if s))


async def run(plans: list[Plan]) -> None:
    """Run the bots until one ends or a signal comes; then stop running turns, the bots, the agents."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    started: list[Agent] = []
    try:
        for p in plans:
            await p.bot.agent.start()
            started.append(p.bot.agent)
            for warning in p.bot.warnings():
                log.warning("%s: %s", p.name, warning)
            log.info("starting %s", p.bot.describe())
        bots = [asyncio.create_task(p.bot.run(), name=f"bot-{p.name}") for p in plans]
        signalled = asyncio.create_task(stopping.wait())
        await asyncio.wait([*bots, signalled], return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        # Replies still streaming end with "Stopped" while their platform clients are still up.
        await asyncio.gather(*(agent.conversations.shutdown() for agent in started))
        for task in bots:
            task.cancel()
        results = await asyncio.gather(*bots, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise ExceptionGroup("bots stopped with errors", errors)
    finally:
        for agent in started:
            await agent.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load(args)
        logging.basicConfig(
            level=(args.log_level or config.log_level).upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        plans = plan(config, args.bot)
    except CCBridgeError as exc:
        print(f"ccbridge: {exc}", file=sys.stderr)
        return 2
    creds = check_credentials(plans)
    if args.check:
        print(f"config OK ({config.source or 'defaults, no config file'})")
        for p in plans:
            print(f"would run: {p.bot.describe()}")
            for warning in p.bot.warnings():
                print(f"  warning: {warning}")
        print(f"credentials: {creds}" if creds else f"warning: {CREDENTIALS_HELP}")
        for mode in sorted({p.bot.agent.sections.agent.sandbox for p in plans}):
            try:
                status = probe_sandbox(mode)
            except CCBridgeError as exc:
                print(f"ccbridge: {exc}", file=sys.stderr)
                return 2
            state = "active" if status.active else "not active"
            print(f"sandbox for approved Bash commands: {state} ({status.reason})")
        return 0
    if creds is None:
        print(f"ccbridge: {CREDENTIALS_HELP}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(plans))
    except KeyboardInterrupt:
        pass
    except (CCBridgeError, ExceptionGroup) as exc:
        errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        if not all(isinstance(e, CCBridgeError) for e in errors):
            raise
        for error in errors:
            print(f"ccbridge: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
