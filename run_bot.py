#!/usr/bin/env python3
"""Run ccbridge bots: ``ccbridge --config config.yaml [--bot NAME ...] [--check]``
(or ``python run_bot.py ...`` from a checkout).

With no bot configured (or no config file at all) the console bot runs. ``.env`` files are read
first (beside the config file, then in the current directory), never overriding the environment.
Logs go to stderr (or ``log_file``), as text or JSON lines (``log_format``); while the console bot
holds the terminal, only warnings and errors, unless ``--log-level`` asks for more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import re
import signal
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bots import Bot, BotSettings, load_bot_class
from core import Agent, AppConfig, CCBridgeError, ConfigError, Sections, load_config
from core.config import AccessSettings, OpsSettings, check_log_level, load_env_files
from core.credentials import credentials_help, credentials_source
from core.metrics import Metrics
from core.ops import OpsServer
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
    parser.add_argument(
        "--log-level", help="override log_level from the config (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument(
        "--migrate-store",
        nargs=2,
        type=Path,
        metavar=("FROM_CONFIG", "TO_CONFIG"),
        help="copy conversations, history and transcripts from the store of one config file to another's",
    )
    return parser.parse_args(argv)


def config_file(args: argparse.Namespace) -> Path | None:
    """``--config``, else ./config.yaml if there is one."""
    if args.config is not None:
        return Path(args.config)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load(args: argparse.Namespace) -> AppConfig:
    return load_config(config_file(args))


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
    metrics = Metrics()  # one registry for the process: /metrics shows every bot
    for name in names:
        entry = config.bots.get(name)
        kind = entry.kind if entry else CONSOLE
        bot_class = load_bot_class(kind, name=name)
        try:
            settings = bot_class.parse_settings(name, entry.settings if entry else {})
        except ConfigError as exc:
            raise config.explain(exc, prefix=f"bots.{name}") from None  # name the variable a bad value came from
        sections = bot_class.adjust_sections(config.for_bot(name) if entry else config.resolved())
        # config_path: sandboxed Bash may not read the config file nor the .env beside it
        agent = Agent(sections, config_path=config.source, name=name, metrics=metrics)
        plans.append(Plan(name, bot_class, bot_class(name, agent, settings)))
    return plans


def check_credentials(plans: list[Plan]) -> str | None:
    """The credentials source, or None when no bot could authenticate."""
    sources = {
        credentials_source(agent.env, setting_sources=agent.setting_sources)
        for agent in (p.bot.agent.sections.agent for p in plans)
    }
    return None if None in sources else ", ".join(sorted(s for s in sources if s))


def bots_access(config: AppConfig) -> dict[str, AccessSettings]:
    """Every configured bot's ``access`` section after its overrides (``Bot.bots_access``); a bot whose
    sections do not validate is left out (it cannot run either)."""
    found = {}
    for name in config.bots:
        with contextlib.suppress(CCBridgeError):
            found[name] = config.for_bot(name).access
    return found


@dataclass
class Fresh:
    """One bot's re-read configuration: its sections, and its own settings (None: the console's defaults)."""

    sections: Sections
    settings: BotSettings | None


class ConfigReloader:
    """Re-reads the config file and gives each running bot its new access, reply and agent settings (and
    its own settings, for what the bot can change while it runs): on SIGHUP (``reloader()``) and for the
    HTTP API's ``POST /admin/reload`` (``await reloader.reload()``, handed to every bot as ``Bot.reloader``).

    The whole file is validated before anything changes: an invalid file changes nothing, and one log
    line says what is wrong, naming the key.
    """

    def __init__(self, args: argparse.Namespace, plans: list[Plan]) -> None:
        self.args = args
        self.plans = plans
        self._lock = asyncio.Lock()
        self.source = config_file(args)  # the file the bots started from (./config.yaml found then)

    def read(self) -> tuple[dict[str, Fresh], dict[str, AccessSettings]]:
        """Every bot's new configuration, and every configured bot's access (nothing is applied);
        raises CCBridgeError for an invalid file, and for one gone or empty since the start (whose
        defaults would lock everybody out)."""
        path = self.source or config_file(self.args)
        if self.source is not None:
            try:
                text = self.source.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise ConfigError(f"cannot read config file {self.source}: {exc.strerror or exc}") from None
            if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
                raise ConfigError(f"{self.source}: the config file is empty (half written?)")
        config = load_config(path)
        fresh: dict[str, Fresh] = {}
        for p in self.plans:
            entry = config.bots.get(p.name)
            settings = None
            if entry is not None:
                try:
                    settings = p.bot_class.parse_settings(p.name, entry.settings)
                except ConfigError as exc:
                    raise config.explain(exc, prefix=f"bots.{p.name}") from None
            sections = p.bot_class.adjust_sections(config.for_bot(p.name) if entry else config.resolved())
            fresh[p.name] = Fresh(sections, settings)
        return fresh, bots_access(config)

    def apply(self, fresh: dict[str, Fresh], access: dict[str, AccessSettings]) -> dict[str, list[str]]:
        """Give each bot its new configuration; by bot, what needs a restart."""
        needs_restart: dict[str, list[str]] = {}
        for p in self.plans:
            p.bot.bots_access = access
            new = fresh[p.name]
            pending = p.bot.agent.reload(new.sections)
            if new.settings is not None:
                pending += p.bot.reload(new.settings)
            needs_restart[p.name] = pending
            log.info(
                "%s: configuration reloaded%s", p.name, f" ({', '.join(pending)} need a restart)" if pending else ""
            )
        return needs_restart

    @staticmethod
    def failed(exc: CCBridgeError) -> None:
        log.error("reload failed, keeping the running configuration: %s", str(exc).replace("\n", " "))

    def __call__(self) -> bool:
        """SIGHUP: reload now; False (and one log line) when the file is invalid."""
        try:
            fresh = self.read()
        except CCBridgeError as exc:
            self.failed(exc)
            return False
        self.apply(*fresh)
        return True

    async def reload(self) -> dict[str, list[str]]:
        """Reload (the file is read in a thread); raises the CCBridgeError of an invalid file, logged."""
        async with self._lock:
            try:
                fresh = await asyncio.to_thread(self.read)
            except CCBridgeError as exc:
                self.failed(exc)
                raise
            return self.apply(*fresh)


def reload_plans(args: argparse.Namespace, plans: list[Plan]) -> bool:
    """SIGHUP: re-read the config file (see :class:`ConfigReloader`); False when it is invalid."""
    return ConfigReloader(args, plans)()


#: seconds stopped turns get to record how they ended (``Conversations.shutdown``), on top of the drain
STOP_GRACE = 10.0


async def run(
    plans: list[Plan],
    reload: Callable[[], object] | None = None,
    ops: OpsSettings | None = None,
    drain_timeout: float = 20.0,
) -> None:
    """Run the bots until one ends or a signal comes; then drain: the bots stop taking messages and
    running turns get ``drain_timeout`` seconds to finish (those still running are stopped); then the
    agents close (releasing their conversations to other instances).

    ``reload`` runs on SIGHUP (re-reading the config for new turns); ``ops`` with a port serves
    ``/health``, ``/ready`` and ``/metrics`` there (:mod:`core.ops`).
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    # A bot holding the terminal (the interactive console) handles Ctrl-C itself: it stops a reply.
    terminal = uses_terminal(plans)
    for sig in (signal.SIGTERM,) if terminal else (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    if reload is not None and hasattr(signal, "SIGHUP"):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload)
    started: list[Agent] = []
    server: OpsServer | None = None
    try:
        for p in plans:
            await p.bot.agent.start()
            started.append(p.bot.agent)
            for warning in p.bot.warnings():
                log.warning("%s: %s", p.name, warning)
            log.info("starting %s", p.bot.describe())
        if ops is not None and ops.port is not None and plans:
            server = await OpsServer(ops, started, plans[0].bot.agent.metrics.metrics).start()
        for p in plans:  # the bots' own drain outlasts ours: turns stopped at its end still say so
            p.bot.drain_timeout = drain_timeout + STOP_GRACE
        bots = [asyncio.create_task(p.bot.run(), name=f"bot-{p.name}") for p in plans]
        signalled = asyncio.create_task(stopping.wait())
        await asyncio.wait([*bots, signalled], return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        busy = sum(len(agent.conversations.running()) for agent in started)
        if busy:
            log.info("stopping: letting %d running turn(s) finish (up to %gs)", busy, drain_timeout)
        # Each bot stops taking messages and lets those in flight finish; after drain_timeout the turns
        # still running are stopped, their replies ending with "Stopped" while the platform clients are up.
        stopper = asyncio.create_task(_stop_turns_after(drain_timeout, started))
        for task in bots:
            task.cancel()
        results = await asyncio.gather(*bots, return_exceptions=True)
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
        await asyncio.gather(*(agent.conversations.shutdown(STOP_GRACE) for agent in started))
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise ExceptionGroup("bots stopped with errors", errors)
    finally:
        if server is not None:
            await server.stop()
        for agent in started:
            await agent.close()


async def _stop_turns_after(delay: float, agents: list[Agent]) -> None:
    await asyncio.sleep(delay)
    if any(agent.conversations.running() for agent in agents):
        log.warning("stopping the turns still running after %gs", delay)
    await asyncio.gather(*(agent.conversations.shutdown(STOP_GRACE) for agent in agents))


def uses_terminal(plans: list[Plan]) -> bool:
    """Whether a bot takes the terminal over (the interactive console)."""
    return any(getattr(p.bot, "uses_terminal", False) for p in plans)


# -- logging -------------------------------------------------------------------------
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes every LogRecord has: anything else on a record came from ``extra=``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_NOT_EXTRA = frozenset({"color_message"})  # uvicorn's colored duplicate of the message


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, then every
    ``extra`` field of the record (``log.info("turn", extra={"cost_usd": 0.01})``), and ``exc_info`` /
    ``stack_info`` when there are any. Values JSON cannot hold are written as text."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        entry: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in _NOT_EXTRA and key not in entry:
                entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _jsonable(value: object) -> object:
    try:
        json.dumps(value, default=str)
    except (TypeError, ValueError):  # e.g. a dict with tuple keys
        return repr(value)
    return value


#: credentials libraries put in the lines they log: a Telegram bot token in every Bot API URL (httpx logs
#: each request at INFO), Slack tokens
_SECRETS = re.compile(r"(?<=/bot)\d+:[A-Za-z0-9_-]{20,}|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bxapp-[A-Za-z0-9-]{10,}")


class RedactingFilter(logging.Filter):
    """Replaces credentials in log lines (the message with its arguments) by ``<redacted>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (a broken record is the formatter's to report)
            return True
        redacted = _SECRETS.sub("<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, so that a prompt or a live display
    redirecting it (prompt_toolkit's ``patch_stdout``, rich's ``Live``) shows the line above itself."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def setup_logging(config: AppConfig, level: str | None, *, terminal: bool) -> None:
    """Logs to ``log_file`` if set, else stderr; text or JSON lines (``log_format``).

    ``level``: ``--log-level`` (None: ``log_level`` from the config). While a bot holds the terminal
    (``terminal``), stderr gets WARNING and above only unless ``--log-level`` asks for more, so library
    lines never land in the chat.
    """
    effective = level or config.log_level
    handler: logging.Handler
    path = config.log_path
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", key="log_file") from None
    else:
        handler = StderrHandler()
        if terminal and level is None and logging.getLevelName(effective) < logging.WARNING:
            effective = "WARNING"
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(effective)
    lark = logging.getLogger("Lark")  # lark-oapi prints to stdout with a handler of its own: ours instead
    for own in list(lark.handlers):
        lark.removeHandler(own)
    lark.propagate = True
    logging.captureWarnings(True)  # warnings.warn() too: never printed straight onto the terminal


# -- the command -----------------------------------------------------------------------
def version_line() -> str:
    """``ccbridge 0.2.0 (claude-agent-sdk 0.2.189, Claude Code 2.1.332)``."""
    parts = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        parts.append(f"claude-agent-sdk {importlib.metadata.version('claude-agent-sdk')}")
    with contextlib.suppress(ImportError):
        from claude_agent_sdk._cli_version import __cli_version__

        parts.append(f"Claude Code {__cli_version__}")
    return f"ccbridge {_own_version()}" + (f" ({', '.join(parts)})" if parts else "")


def _own_version() -> str:
    pyproject = Path(__file__).with_name("pyproject.toml")  # a checkout: the version being worked on
    if pyproject.is_file():
        with contextlib.suppress(OSError, tomllib.TOMLDecodeError, KeyError):
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    try:
        return importlib.metadata.version("ccbridge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def print_error(exc: BaseException) -> None:
    """``ccbridge: <what to fix>``, one line per problem."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"ccbridge: {line}", file=sys.stderr)


def _log_level_arg(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_log_level(value)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--log-level") from None


def migrate_store(paths: list[Path]) -> int:
    """``--migrate-store FROM_CONFIG TO_CONFIG``: copy everything from one store to another (bots stopped)."""
    from core.store import create_store
    from core.transcripts import transcripts_for
    from core.transcripts.migrate import copy_store

    try:
        for path in paths:
            load_env_files(path)
        source, target = (load_config(path).resolved() for path in paths)
    except CCBridgeError as exc:
        print_error(exc)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def copy() -> str:
        stores = [create_store(source.store), create_store(target.store)]
        transcripts = [transcripts_for(source.store), transcripts_for(target.store)]
        async with stores[0], stores[1], transcripts[0], transcripts[1]:
            copied = await copy_store(*stores, *transcripts, sessions_dir=source.agent.sessions_dir)
            return f"copied {copied} from {stores[0].describe()} to {stores[1].describe()}"

    try:
        print(asyncio.run(copy()))
    except CCBridgeError as exc:
        print_error(exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.migrate_store:
        return migrate_store(args.migrate_store)
    try:
        env_files = load_env_files(config_file(args))
        config = load(args)
        level = _log_level_arg(args.log_level)
        plans = plan(config, args.bot)
        setup_logging(config, level, terminal=uses_terminal(plans))
    except CCBridgeError as exc:
        print_error(exc)
        return 2
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    creds = check_credentials(plans)
    cli_path = next((p.bot.agent.sections.agent.cli_path for p in plans if p.bot.agent.sections.agent.cli_path), None)
    if args.check:
        print(f"config OK ({config.source or 'defaults, no config file'})")
        for env_file in env_files:
            print(f"environment file: {env_file}")
        for p in plans:
            print(f"would run: {p.bot.describe()}")
            for warning in p.bot.warnings():
                print(f"  warning: {warning}")
        print(f"credentials: {creds}" if creds else f"warning: {credentials_help(cli_path)}")
        caps = [p.bot.agent.sections.agent.process_limit for p in plans]
        if len(caps) > 1:  # each bot has its own warm pool and cap
            print(
                f"Claude Code processes: at most {sum(caps)} alive ({' + '.join(map(str, caps))}, each bot's pool_size)"
            )
        for mode in sorted({p.bot.agent.sections.agent.sandbox for p in plans}):
            try:
                status = probe_sandbox(mode)
            except CCBridgeError as exc:
                print_error(exc)
                return 2
            state = "active" if status.active else "not active"
            print(f"sandbox for approved Bash commands: {state} ({status.reason})")
        return 0
    if creds is None:
        print(f"ccbridge: {credentials_help(cli_path)}", file=sys.stderr)
        return 2
    reloader = ConfigReloader(args, plans)
    access = bots_access(config)
    for p in plans:
        p.bot.reloader = reloader.reload
        p.bot.bots_access = access
    try:
        asyncio.run(run(plans, reload=reloader, ops=config.ops, drain_timeout=config.drain_timeout))
    except KeyboardInterrupt:
        pass
    except (CCBridgeError, ExceptionGroup) as exc:
        errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        if not all(isinstance(e, CCBridgeError) for e in errors):
            raise
        for error in errors:
            print_error(error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
