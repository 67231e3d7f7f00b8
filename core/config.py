"""Configuration: one YAML file, ``${ENV}`` substitution, env overrides, pydantic validation.

Shared sections (``agent``, ``workspace``, ``store``, ``access``, ``reply``) apply to
every bot; each entry under ``bots:`` names its ``kind`` (a module in ``bots/``),
carries that bot's own settings, and may override any shared section.

Precedence, highest first: ``CCBRIDGE_<SECTION>__<KEY>`` environment variables
(they win over a bot's own overrides too; an empty one counts as unset), a bot's
overrides, the YAML file's shared sections, defaults. Relative paths are resolved
against the config file's directory. ``.env`` files (:func:`load_env_files`) only
add variables the environment does not already have.

Every error is one line per problem naming what to fix: the key (``agent.pool_size``),
the environment variable when the value came from one (``CCBRIDGE_AGENT__POOL_SIZE``,
or the ``${VAR}`` a file value was taken from), or the file and line of a YAML error.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import json
import os
import re
import zoneinfo
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

import yaml
from dotenv import load_dotenv
from dotenv.parser import parse_stream
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .errors import ConfigError
from .store.settings import (
    REDIS_SCHEMES,
    STORE_BACKEND_NAMES,
    STORE_MODELS,
    MemoryStoreSettings,
    SQLiteStoreSettings,
    StoreSettings,
    store_short_form,
)

PermissionMode = Literal["default", "acceptEdits", "plan", "dontAsk", "bypassPermissions"]
Verbosity = Literal["quiet", "normal", "verbose"]
BusyPolicy = Literal["queue", "interrupt", "merge"]
SandboxMode = Literal["auto", "on", "off"]
SettingSource = Literal["user", "project", "local"]
LogFormat = Literal["text", "json"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_log_level(value: object) -> str:
    """``value`` as a log level name (any case); a ValueError naming the choices otherwise."""
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS[:-1]) + f" or {LOG_LEVELS[-1]}"
        raise ValueError(f"{value!r} is not a log level (use {choices})")
    return level


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AgentSettings(_Section):
    """How Claude Code runs: model, prompt, tools, limits, warm-client pool."""

    model: str | None = None
    system_prompt: str | None = Field(None, description="Appended to Claude Code's own system prompt.")
    permission_mode: PermissionMode = "default"
    allowed_tools: list[str] = Field(default_factory=list, description="Tools run without asking (fnmatch patterns).")
    approval_tools: list[str] = Field(default_factory=lambda: ["*"], description="Tools that need the user's approval.")
    admin_tools: list[str] = Field(default_factory=list, description="Tools admins may run without asking.")
    disallowed_tools: list[str] = Field(default_factory=list)
    approval_timeout: float = Field(300.0, gt=0)
    max_turns: int | None = Field(None, gt=0)
    max_budget_usd: float | None = Field(None, gt=0)
    turn_timeout: float | None = Field(None, gt=0, description="Seconds before a turn is interrupted.")
    mcp_servers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    setting_sources: list[SettingSource] = Field(default_factory=list)
    cli_path: str | None = None
    pool_size: int = Field(
        8,
        gt=0,
        description="Warm Claude Code processes kept for active conversations; also the most alive at once "
        "(besides the ones being closed): a turn needing another closes an idle one, or waits while all are busy.",
    )
    idle_timeout: float = Field(900.0, gt=0, description="Seconds before an idle warm process is closed.")
    max_processes: int | None = Field(
        None,
        gt=0,
        description="Deprecated: pool_size caps the Claude Code processes alive. A value below pool_size lowers "
        "that cap (and the pool); one above it is ignored.",
    )
    max_spawns: int = Field(2, gt=0, description="Claude Code processes starting at the same time.")
    busy_user_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="CPU niceness (1-19) of a Claude Code process, and the commands it runs, started for a user "
        "who already has another turn going: one user's parallel work yields the CPU to other users' (0: off).",
    )
    prewarm: int = Field(
        4,
        ge=0,
        description="At start-up, open warm processes for this many of the most recently active conversations "
        "(at most pool_size; in the background); also re-warm a conversation evicted while active (0: off).",
    )
    prewarm_within: float = Field(
        3600.0, gt=0, description="Seconds: only conversations active this recently are pre-warmed."
    )
    max_retries: int | None = Field(
        4, ge=0, description="Retries of a failed model API call (overload, rate limit) before the turn fails."
    )
    sandbox: SandboxMode = Field(
        "auto", description="Run approved Bash commands in Claude Code's sandbox (bubblewrap on Linux)."
    )
    cross_session_tools: bool = Field(
        False,
        description="Allow the tools that reach other Claude Code sessions on this machine (ListAgents, "
        "SendMessage, ...). Off: every conversation's agent is on its own.",
    )
    sessions_dir: Path = Field(
        Path("data/sessions"),
        description="Each conversation's private Claude Code config and temp directories (transcripts live here).",
    )

    @property
    def process_limit(self) -> int:
        """The most Claude Code processes alive at once, besides the ones being closed: the pool's size
        (a deprecated ``max_processes`` can only lower it)."""
        return min(self.pool_size, self.max_processes or self.pool_size)

    @field_validator("permission_mode")
    @classmethod
    def _no_bypass_as_root(cls, value: str) -> str:
        if value == "bypassPermissions" and hasattr(os, "geteuid") and os.geteuid() == 0:
            raise ValueError(
                "Claude Code refuses bypassPermissions when run as root; use 'default' "
                "(workspace-confined file tools, approvals for the rest)"
            )
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value


class WorkspaceSettings(_Section):
    base_dir: Path = Path("workspaces")
    uploads_dir: str = "uploads"
    max_upload_mb: float = Field(20.0, gt=0, description="Largest file a user may send, in MB.")
    admin_paths: list[Path] = Field(default_factory=list, description="Extra roots admins' file tools may use.")


class AccessSettings(_Section):
    allowlist: list[str] = Field(default_factory=list, description="'platform:user' entries ('platform:*' for all).")
    admins: list[str] = Field(default_factory=list, description="'platform:user' entries.")
    allow_all: bool = False
    busy_policy: BusyPolicy = Field(
        "queue",
        description="A message while a reply runs: 'queue' (answered after it, one turn each), 'interrupt' "
        "(stops it), 'merge' (everything that arrives meanwhile is answered together in one next turn).",
    )
    debounce: float = Field(
        0.0,
        ge=0,
        le=60,
        description="Seconds of quiet from the same person before the turn starts (0: off); each message "
        "restarts the wait, up to 4x this in all. Commands are never delayed.",
    )
    max_running_per_user: int = Field(
        2, gt=0, description="A chat user's turns running at once (across conversations); more wait in line."
    )
    refusal: str = "Sorry, I can't help you here: you are not on this bot's allowlist. Ask an admin to add you."

    @field_validator("allowlist", "admins")
    @classmethod
    def _qualified(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            platform, sep, user = str(entry).partition(":")
            if not sep or not platform or not user or user == "role:":
                raise ValueError(f"{entry!r} must look like 'platform:user_id' (or 'platform:role:<role id>')")
        return [str(e) for e in entries]


class ReplySettings(_Section):
    verbosity: Verbosity = "normal"
    show_cost: bool = False


class UserBudget(_Section):
    """One user's own limits (``budgets.users``): each one given replaces the default (null: the default).

    ``budgets.exempt`` lifts every limit of a user."""

    daily_usd: float | None = Field(None, ge=0)
    monthly_usd: float | None = Field(None, ge=0)


class BudgetSettings(_Section):
    """Per-user spend limits, in USD (a bot's ``budgets:`` override is that bot's default).

    A user whose spend today (or this month) has reached the limit is told so and nothing runs;
    the turn that crosses a limit finishes. Spend is kept in the store (every instance, restarts).
    """

    daily_usd: float | None = Field(None, ge=0, description="Each user's limit per day (null: none).")
    monthly_usd: float | None = Field(None, ge=0, description="Each user's limit per calendar month (null: none).")
    users: dict[str, UserBudget] = Field(
        default_factory=dict, description="'platform:user' -> that user's own daily_usd / monthly_usd."
    )
    exempt: list[str] = Field(default_factory=list, description="'platform:user' entries never limited.")
    admins_exempt: bool = Field(True, description="access.admins are never limited.")
    timezone: str = Field("UTC", description="Where days and months begin (an IANA name, e.g. Europe/Berlin).")

    @field_validator("exempt")
    @classmethod
    def _qualified_exempt(cls, entries: list[str]) -> list[str]:
        return [_user_entry(e) for e in entries]

    @field_validator("users")
    @classmethod
    def _qualified_users(cls, users: dict[str, UserBudget]) -> dict[str, UserBudget]:
        return {_user_entry(name): limits for name, limits in users.items()}

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value.upper() == "UTC":
            return "UTC"
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (an IANA name such as UTC or Europe/Berlin)") from None
        return value

    @property
    def limited(self) -> bool:
        """Whether any limit is set (none: nothing is checked before a turn)."""
        return (
            self.daily_usd is not None
            or self.monthly_usd is not None
            or any(u.daily_usd is not None or u.monthly_usd is not None for u in self.users.values())
        )


def _user_entry(entry: object) -> str:
    platform, sep, user = str(entry).partition(":")
    if not sep or not platform or not user:
        raise ValueError(f"{entry!r} must look like 'platform:user_id'")
    return str(entry)


class OpsSettings(_Section):
    """The ops port (``ops:``): ``/health``, ``/ready`` and ``/metrics`` for deployments without the HTTP API."""

    port: int | None = Field(None, ge=0, le=65535, description="Where to serve them (null: off).")
    host: str = Field("127.0.0.1", description="The interface to listen on (0.0.0.0: every one).")


def coordination_short_form(value: Any) -> Any:
    """``coordination: redis`` / ``memory`` / ``redis://host:6379/0`` as the mapping it stands for.

    ``redis`` without a URL takes ``$REDIS_URL`` when it connects; anything else is returned as given."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("memory", "redis"):
        return {"backend": text.lower()}
    if text.lower().startswith(REDIS_SCHEMES):
        return {"backend": "redis", "url": text}
    raise ValueError(
        f"{value!r} is not a coordination backend: write memory, redis, a redis:// URL, "
        "or a mapping (backend: redis, url: ...)"
    )


class CoordinationSettings(_Section):
    """What several instances of one bot share to agree (memory: a single instance).

    Also given in short: ``coordination: redis`` (the URL from ``$REDIS_URL``), ``coordination: memory``,
    or ``coordination: redis://host:6379/0``."""

    backend: Literal["memory", "redis"] = "memory"
    url: str | None = Field(None, description="redis:// URL for backend redis (default: $REDIS_URL).")
    instance_id: str | None = Field(
        None,
        description="This instance's id (default: the host name plus a hash of its home and working directory; "
        "a second live agent there gets <id>-2).",
    )
    key_prefix: str = "ccbridge:"
    lease_ttl: float = Field(15.0, gt=1, description="Seconds an instance's leases outlive its last heartbeat.")
    shared_storage: bool = Field(
        False,
        description="workspace.base_dir and agent.sessions_dir are on storage every instance mounts "
        "(silences the start-up warning when they look local).",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return coordination_short_form(value)


class ProjectSettings(_Section):
    """A real repository a place works on ("in #payments, Claude works on the payments repo")."""

    path: Path = Field(description="The project's directory (usually a git repository); it must exist.")
    places: list[str] = Field(
        default_factory=list,
        description="Where it applies: 'platform:place' entries (slack:C0123, telegram:-100123, "
        "discord:guild/<server id> or discord:channel/<channel id>, feishu:oc_abc; a user id for that user's DMs).",
    )
    mode: Literal["worktree", "shared"] = Field(
        "worktree",
        description="worktree: each conversation gets its own git worktree on branch ccbridge/<conversation>; "
        "shared: every conversation works in the checkout itself.",
    )
    retention: float = Field(
        7 * 86400.0,
        gt=0,
        description="Seconds a conversation's worktree is kept after its last turn (the branch stays).",
    )

    @field_validator("places")
    @classmethod
    def _qualified_places(cls, places: list[str]) -> list[str]:
        for place in places:
            platform, sep, where = str(place).partition(":")
            if not sep or not platform or not where:
                raise ValueError(f"{place!r} must look like 'platform:place' (e.g. slack:C0123)")
        return places

    def missing_path(self) -> bool:
        return not self.path.is_dir()


def check_paths(settings: dict[str, ProjectSettings], prefix: str = "projects") -> None:
    """Every project's directory exists; else a :class:`ConfigError` naming ``<prefix>.<name>.path``."""
    for name, project in settings.items():
        if project.missing_path():
            raise ConfigError(f"{project.path} is not an existing directory", key=f"{prefix}.{name}.path")


class Sections(_Section):
    """The shared sections, as one bot sees them (after its overrides)."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    store: StoreSettings = Field(default_factory=SQLiteStoreSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    reply: ReplySettings = Field(default_factory=ReplySettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)
    projects: dict[str, ProjectSettings] = Field(default_factory=dict)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)


SECTION_NAMES = tuple(Sections.model_fields)


Loc = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class VarRef:
    """A value the config file takes from the environment: ``token: ${TELEGRAM_BOT_TOKEN}``."""

    name: str  # the variable
    written: str  # as the file writes it, e.g. ${TELEGRAM_BOT_TOKEN:-}
    value: str  # what it gave


@dataclasses.dataclass
class Origins:
    """Where configuration values came from, so that an error names what to fix.

    An error about a value set by a ``CCBRIDGE_*`` variable names that variable; one about
    a value the file takes from ``${VAR}`` says which variable to set.
    """

    file: str | None = None  # the config file, as given
    refs: dict[Loc, VarRef] = dataclasses.field(default_factory=dict)  # file values from ${VAR}
    env: dict[Loc, str] = dataclasses.field(default_factory=dict)  # CCBRIDGE_* overrides by lower-cased path

    def describe(self, loc: Loc, msg: str, prefix: Loc = (), *, sections: bool = False) -> str:
        """One line for an error at ``prefix + loc``; ``sections``: ``loc`` is in a bot's merged sections."""
        full = prefix + loc
        # a bot's merged sections: its own variable (CCBRIDGE_BOTS__API__AGENT__POOL_SIZE) wins over the
        # top-level one (CCBRIDGE_AGENT__POOL_SIZE)
        overridden = self._env_var(full) or (self._env_var(loc) if sections else None)
        if overridden is not None:
            name, rest = overridden
            return f"{name}{_suffix(rest)}: {msg}"
        for place in (full, loc) if sections and prefix else (full,):
            ref = self.refs.get(place)
            if ref is not None:
                return self._from_var(full, ref, msg)
            blank = self._blank_field_named(place, msg)
            if blank is not None:  # a check of the whole model about a field its variable left empty
                return f"{_dotted(full)}: {msg}; {self._set_var(blank[1])}"
        if full:  # "store.backend must be one of ..." reported on store: name the key it is about
            about = re.match(rf"{re.escape(str(full[-1]))}\.(\w+) (.+)", msg)
            if about:
                key = (*full, about.group(1))
                overridden = self._env_var(key)  # e.g. CCBRIDGE_STORE__BACKEND naming no backend
                if overridden is not None:
                    return f"{overridden[0]}{_suffix(overridden[1])}: {about.group(2)}"
                return f"{_dotted(key)}: {about.group(2)}"
        if msg == "Field required" and full:
            return f"{_dotted(full)}: is required; {self._where_to_set(loc if sections else full)}"
        return f"{_dotted(full) or '(top level)'}: {msg}"

    def _where_to_set(self, path: Loc) -> str:
        """Where a missing setting can be given: the config file, or its ``CCBRIDGE_*`` variable."""
        file = f"add it to {self.file or 'the config file'}"
        if not all(isinstance(p, str) for p in path):
            return file  # an item of a list has no variable of its own
        return f"{file} or set {_ENV_PREFIX}{'__'.join(str(p).upper() for p in path)}"

    def _env_var(self, path: Loc) -> tuple[str, Loc] | None:
        lowered = _lower(path)
        for n in range(len(path), 0, -1):
            name = self.env.get(lowered[:n])
            if name is not None:
                return name, path[n:]
        return None

    def _from_var(self, loc: Loc, ref: VarRef, msg: str) -> str:
        if ref.value.strip():
            return f"{_dotted(loc)}: {msg} (the value comes from {ref.name})"
        return f"{_dotted(loc)}: is empty; {self._set_var(ref)}"

    def _set_var(self, ref: VarRef) -> str:
        return f"set {ref.name} ({self.file or 'the config file'} uses {ref.written})"

    def _blank_field_named(self, place: Loc, msg: str) -> tuple[str, VarRef] | None:
        best: tuple[int, str, VarRef] | None = None
        for key, ref in self.refs.items():
            if len(key) <= len(place) or key[: len(place)] != place or ref.value.strip():
                continue
            name = key[len(place)]
            found = re.search(rf"\b{re.escape(str(name))}\b", msg) if isinstance(name, str) else None
            if found and (best is None or found.start() < best[0]):
                best = (found.start(), name, ref)
        return (best[1], best[2]) if best else None


def _lower(path: Loc) -> Loc:
    return tuple(p.lower() if isinstance(p, str) else p for p in path)


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def _suffix(rest: Loc) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)


class BotEntry(BaseModel):
    """One named bot instance: its kind, its own settings, overrides of shared sections."""

    model_config = ConfigDict(extra="allow")

    kind: str
    enabled: bool = True
    agent: dict[str, Any] | None = None
    workspace: dict[str, Any] | None = None
    store: dict[str, Any] | None = None
    access: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    coordination: dict[str, Any] | None = None
    projects: dict[str, Any] | None = None
    budgets: dict[str, Any] | None = None

    @field_validator("coordination", mode="before")
    @classmethod
    def _coordination_short_form(cls, value: Any) -> Any:
        return coordination_short_form(value)

    @field_validator("store", mode="before")
    @classmethod
    def _store_short_form(cls, value: Any) -> Any:
        return store_short_form(value)

    @field_validator("kind")
    @classmethod
    def _module_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
            raise ValueError(f"{value!r} is not a bot kind (a module name in bots/)")
        return value

    @property
    def settings(self) -> dict[str, Any]:
        """The bot's own (platform) settings: everything but kind/enabled/overrides."""
        return dict(self.model_extra or {})

    def overrides(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SECTION_NAMES if getattr(self, name) is not None}


class AppConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CCBRIDGE_", env_nested_delimiter="__", env_ignore_empty=True, extra="forbid", validate_default=True
    )

    agent: AgentSettings = Field(default_factory=AgentSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    store: StoreSettings = Field(default_factory=SQLiteStoreSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    reply: ReplySettings = Field(default_factory=ReplySettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)
    projects: dict[str, ProjectSettings] = Field(default_factory=dict)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    bots: dict[str, BotEntry] = Field(default_factory=dict)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    log_level: str = "INFO"
    log_format: LogFormat = Field(
        "text", description="'text': one readable line per record; 'json': one JSON object per line (log shippers)."
    )
    log_file: Path | None = Field(None, description="Write the log to this file instead of stderr.")
    drain_timeout: float = Field(
        20.0,
        ge=0,
        description="Seconds a stopping run_bot (SIGTERM, Ctrl-C) lets running turns finish after it stops taking "
        "messages; turns still running then are stopped (give the orchestrator's grace period 15 s more).",
    )
    source: Path | None = Field(None, exclude=True, description="The file this was loaded from.")

    _origins: Origins = PrivateAttr(default_factory=Origins)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_EnvOverrides(settings_cls), init_settings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        return check_log_level(value)

    @model_validator(mode="after")
    def _bot_names(self) -> AppConfig:
        for name in self.bots:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"bot name {name!r} may only use letters, digits, '_' and '-'")
        return self

    def sections(self) -> Sections:
        return Sections(**{name: getattr(self, name) for name in SECTION_NAMES})

    def for_bot(self, name: str) -> Sections:
        """The shared sections with bot ``name``'s overrides applied and validated."""
        if name not in self.bots:
            raise ConfigError(f"no bot named {name!r} (configured: {', '.join(self.bots) or 'none'})", key="bots")
        base = self.sections().model_dump()
        merged = merge_sections(base, self.bots[name].overrides())
        # Environment overrides are the operator's last word, for every bot.
        from_env = _EnvOverrides(type(self))()
        merged = merge_sections(merged, {k: v for k, v in from_env.items() if k in SECTION_NAMES})
        try:
            sections = Sections.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(
                describe_validation_error(exc, prefix=f"bots.{name}", origins=self._origins, sections=True)
            ) from None
        resolved = _resolve_paths(sections, self._base_dir())
        own = self.bots[name].projects or {}
        for project, settings in resolved.projects.items():  # the key that set the path is named
            if settings.missing_path():
                given_by_bot = isinstance(own.get(project), dict) and "path" in own[project]
                where = f"bots.{name}.projects" if given_by_bot else "projects"
                raise ConfigError(f"{settings.path} is not an existing directory", key=f"{where}.{project}.path")
        return resolved

    @property
    def warnings(self) -> list[str]:
        """Problems worth a line at start-up that do not stop it (a mistyped ``CCBRIDGE_*`` section)."""
        return list(self._warnings)

    @property
    def log_path(self) -> Path | None:
        """``log_file``, resolved against the config file's directory."""
        if self.log_file is None:
            return None
        path = self.log_file.expanduser()
        return path if path.is_absolute() else self._base_dir() / path

    def explain(self, error: ConfigError, prefix: str) -> ConfigError:
        """``error`` from validating settings found under ``prefix`` (a bot's own settings: ``bots.tg``),
        reworded to name the environment variable a bad value came from.

        Works on the :class:`ValidationError` the error was raised from (``raise ... from None``
        still records it as ``__context__``); any other error is returned unchanged.
        """
        cause = error.__context__
        if isinstance(cause, ValidationError):
            return ConfigError(describe_validation_error(cause, prefix, self._origins))
        return error

    def _base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolved(self) -> Sections:
        resolved = _resolve_paths(self.sections(), self._base_dir())
        check_paths(resolved.projects)
        return resolved


_AGENT_ENV_PREFIX = "CCBRIDGE_AGENT__ENV__"
#: (section, key) env overrides left out of this load (set by :func:`config_from_dict`)
_ENV_IGNORED: contextvars.ContextVar[frozenset[tuple[str, str]]] = contextvars.ContextVar(
    "ccbridge_env_ignored", default=frozenset()
)


class _EnvOverrides(EnvSettingsSource):
    """``CCBRIDGE_<SECTION>__<KEY>`` variables. Names are matched case-insensitively, but the
    variables given to the CLI (``CCBRIDGE_AGENT__ENV__ANTHROPIC_BASE_URL``) keep their case."""

    def __call__(self) -> dict[str, Any]:
        try:
            data = super().__call__()
        except SettingsError as exc:
            field = re.search(r'field "(\w+)"', str(exc))
            raise _bad_env_json(field.group(1) if field else None) from None
        data.pop("source", None)  # not a setting: where the file was read from
        for section, key in _ENV_IGNORED.get():
            part = data.get(section)
            if isinstance(part, dict):
                part.pop(key, None)
                if not part:
                    data.pop(section)
        agent = data.get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("env"), dict):
            agent["env"] = {
                name[len(_AGENT_ENV_PREFIX) :]: value
                for name, value in os.environ.items()
                if name.upper().startswith(_AGENT_ENV_PREFIX) and len(name) > len(_AGENT_ENV_PREFIX)
            }
        return data


def _bad_env_json(section: str | None) -> ConfigError:
    """The error for a ``CCBRIDGE_*`` list or map that is not JSON, naming the variable."""
    example = """(lists and maps are JSON, e.g. CCBRIDGE_AGENT__ALLOWED_TOOLS='["Read"]')"""
    if section is not None:
        for name, value in sorted(os.environ.items()):
            path = _env_path(name)
            if path is None or path[0] != section or not value:
                continue
            if _is_complex(path) and not _is_json(value):
                return ConfigError(f"is not valid JSON {example}", key=name)
    where = f"a CCBRIDGE_{section.upper()}__* variable" if section else "a CCBRIDGE_* variable"
    return ConfigError(f"{where} is not valid JSON {example}")


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _is_complex(path: Loc) -> bool:
    """Whether the setting at ``path`` is a list or map (given as JSON in the environment)."""
    model: Any = AppConfig
    annotation: Any = None
    for part in path:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return annotation is None  # a whole section, or somewhere we cannot see into: JSON
        annotation = fields[part].annotation
        model = annotation
    return get_origin(annotation) in (list, dict) or isinstance(annotation, type) and issubclass(annotation, BaseModel)


_ENV_PREFIX = "CCBRIDGE_"


def _env_path(name: str) -> Loc | None:
    """The lower-cased setting path of a ``CCBRIDGE_*`` variable name (``agent``, ``pool_size``)."""
    if not name.upper().startswith(_ENV_PREFIX):
        return None
    path = tuple(part.lower() for part in name[len(_ENV_PREFIX) :].split("__"))
    return path if all(path) else None


def env_override_paths(environ: Mapping[str, str]) -> dict[Loc, str]:
    """Each ``CCBRIDGE_*`` override's setting path, mapped to the variable's name (for error messages)."""
    out: dict[Loc, str] = {}
    for name, value in environ.items():
        path = _env_path(name)
        if path is not None and value != "" and path[0] in AppConfig.model_fields and path[0] != "source":
            out[path] = name
    return out


def unknown_env_sections(environ: Mapping[str, str], referenced: Collection[str] = ()) -> list[str]:
    """Warnings for ``CCBRIDGE_<SECTION>__...`` variables whose section does not exist (``CCBRIDGE_AGNET__MODEL``).

    Variables without ``__`` (``CCBRIDGE_API_KEY``) and those the config file uses as ``${VAR}`` are not overrides.
    """
    known = set(AppConfig.model_fields) - {"source"}
    out = []
    for name in sorted(environ):
        if not name.upper().startswith(_ENV_PREFIX) or name in referenced:
            continue
        head, sep, rest = name[len(_ENV_PREFIX) :].partition("__")
        if sep and head.lower() not in known:
            sections = [*SECTION_NAMES, "ops", "bots"]
            close = difflib.get_close_matches(head.lower(), sections, n=1)
            hint = f"; did you mean {_ENV_PREFIX}{close[0].upper()}__{rest}?" if close else ""
            out.append(f"{name} is not a ccbridge setting (sections: {', '.join(sections)}){hint}")
    return out


def load_env_files(config: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> list[Path]:
    """Read ``.env`` beside the config file, then ``.env`` in the current directory, into ``os.environ``.

    A variable already set is never changed, so the precedence is: the real environment, then the
    ``.env`` beside the config file, then the one in the current directory (then the config file's own
    values, which ``${VAR}`` and ``CCBRIDGE_*`` overrides read from the result). Returns the files read.
    A line that is not ``NAME=value`` is an error naming the file and line.
    """
    dirs = [Path(config).expanduser().resolve().parent] if config is not None else []
    dirs.append((cwd or Path.cwd()).resolve())
    read = []
    for folder in dict.fromkeys(dirs):
        path = folder / ".env"
        if not path.is_file():
            continue
        try:
            with path.open(encoding="utf-8") as stream:
                bad = next((b.original.line for b in parse_stream(stream) if b.error), None)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if bad is not None:
            raise ConfigError(f"{path}:{bad}: not a NAME=value line")
        load_dotenv(path, override=False, interpolate=True)
        read.append(path)
    return read


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Load, substitute and validate a config file (or only defaults + env when ``path`` is None)."""
    raw: dict[str, Any] = {}
    source: Path | None = None
    origins = Origins()
    if path is not None:
        shown = os.fspath(path)
        origins.file = Path(shown).name
        source = Path(path).resolve()
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {shown}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{shown}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8"
            ) from None
        try:
            loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_error(shown, exc)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{shown}: must hold a mapping of sections at the top level (agent:, bots:, ...)")
        raw = _substitute(loaded, os.environ, "", (), origins.refs)
    return config_from_dict(raw, source=source, origins=origins)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(f"key {key!r} written twice")
        self.key, self.first, self.again = key, first, again


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML keeps the last one
    silently, so a second ``bots:`` section would drop every bot of the first). Keys brought in by a
    merge (``<<: *base``) may still be overridden."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def _yaml_error(shown: str, exc: yaml.YAMLError) -> str:
    """``config.yaml:12:3: YAML syntax error: ...``, on one line."""
    if isinstance(exc, _DuplicateKey):
        where = f"{shown}:{exc.again.line + 1}:{exc.again.column + 1}"
        return f"{where}: {exc.key!r} is written twice here (first at line {exc.first.line + 1}); keep one"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"{shown}: YAML syntax error: {_one_line(str(exc))}"
    mark = exc.problem_mark or exc.context_mark
    where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
    what = exc.problem or exc.context or "not valid YAML"
    if exc.problem and exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        what += f" ({context})"
    return f"{where}: YAML syntax error: {_one_line(what)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def config_from_dict(raw: dict[str, Any], *, source: Path | None = None, origins: Origins | None = None) -> AppConfig:
    """Validate an already-loaded mapping (``CCBRIDGE_*`` env overrides still apply)."""
    origins = origins or Origins()
    origins.env = env_override_paths(os.environ)
    raw = _store_switched_by_env(_short_forms_expanded(raw))
    ignored = _env_keys_of_another_backend(raw, origins)
    token = _ENV_IGNORED.set(frozenset(ignored))
    try:
        config = AppConfig(**raw, source=source)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origins=origins)) from None
    finally:
        _ENV_IGNORED.reset(token)
    config._origins = origins
    # A project binds places to a directory that must exist: say so now, naming the key that set it.
    if config.projects:
        config.resolved()
    for name, bot in config.bots.items():
        if bot.projects:
            config.for_bot(name)
    config._warnings = unknown_env_sections(os.environ, {ref.name for ref in origins.refs.values()})
    config._warnings += deprecated_settings(config, origins)
    config._warnings += [
        f"{variable} is not a setting of store: {config.store.backend}; ignored" for variable in ignored.values()
    ]
    return config


def _short_forms_expanded(raw: dict[str, Any]) -> dict[str, Any]:
    """``store:`` / ``coordination:`` written in short, as their mappings: a ``CCBRIDGE_STORE__*`` (or
    ``CCBRIDGE_COORDINATION__*``) variable then adds to the file's value instead of replacing it."""
    out = dict(raw)
    for section, expand in (("store", store_short_form), ("coordination", coordination_short_form)):
        if isinstance(out.get(section), str):
            with contextlib.suppress(ValueError):  # a bad short form is reported by the validation itself
                out[section] = expand(out[section])
    return out


def _env_keys_of_another_backend(raw: dict[str, Any], origins: Origins) -> dict[tuple[str, str], str]:
    """``CCBRIDGE_STORE__<KEY>`` variables (key -> variable) that the store's backend has no setting for,
    e.g. a container image's ``CCBRIDGE_STORE__PATH`` (SQLite's file) under ``store: postgres``."""
    store = raw.get("store")
    backend = _env_store_backend() or (str(store.get("backend") or "sqlite") if isinstance(store, dict) else "sqlite")
    model = STORE_MODELS.get("postgres" if backend == "postgresql" else backend)
    if model is None:
        return {}  # an unknown backend: its own error names it
    return {
        ("store", path[1]): variable
        for path, variable in origins.env.items()
        if len(path) == 2 and path[0] == "store" and path[1] not in model.model_fields
    }


def deprecated_settings(config: AppConfig, origins: Origins | None = None) -> list[str]:
    """Warnings for settings still accepted but no longer wanted (``agent.max_processes``)."""
    origins = origins or Origins()
    found: list[tuple[str, object, object]] = [
        (origins.env.get(("agent", "max_processes"), "agent.max_processes"), config.agent.max_processes, None)
    ]
    for name, bot in config.bots.items():
        own = bot.agent or {}
        found.append((f"bots.{name}.agent.max_processes", own.get("max_processes"), own.get("pool_size")))
    out = []
    for where, value, pool_size in found:
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        pool = pool_size if isinstance(pool_size, int) else config.agent.pool_size
        if value >= pool:
            out.append(
                f"{where} is deprecated and ignored: the Claude Code processes alive are capped at "
                f"agent.pool_size ({pool}), plus the ones being closed; remove it"
            )
        else:
            out.append(
                f"{where} is deprecated: it caps the Claude Code processes alive (and the warm pool) at {value}, "
                f"below agent.pool_size ({pool}); set agent.pool_size to {value} instead"
            )
    return out


def _env_store_backend() -> str | None:
    """The backend ``CCBRIDGE_STORE__BACKEND`` names (lower case), if set and not blank."""
    return next(
        (v.strip().lower() for k, v in os.environ.items() if k.upper() == "CCBRIDGE_STORE__BACKEND" and v.strip()),
        None,
    )


def _store_switched_by_env(raw: dict[str, Any]) -> dict[str, Any]:
    """``CCBRIDGE_STORE__BACKEND`` naming another backend than the file's replaces the file's store section
    (as a bot's override naming another backend does), keeping the keys every backend has. ``raw``'s short
    forms are expanded already (:func:`_short_forms_expanded`)."""
    backend = _env_store_backend()
    store = raw.get("store")
    if backend is None or not isinstance(store, dict) or str(store.get("backend") or "sqlite") == backend:
        return raw
    common = set(MemoryStoreSettings.model_fields) - {"backend"}
    return {**raw, "store": {k: v for k, v in store.items() if k in common}}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _substitute(
    value: Any, env: Mapping[str, str], where: str, path: Loc = (), refs: dict[Loc, VarRef] | None = None
) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` replaced; a value that is one whole reference is recorded in ``refs``."""
    if isinstance(value, dict):
        return {
            k: _substitute(v, env, f"{where}.{k}" if where else str(k), (*path, str(k)), refs) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, env, f"{where}[{i}]", (*path, i), refs) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set (set it, add it to .env, or write ${{{name}:-default}})",
                key=where,
            )

        out = _VAR.sub(repl, value)
        whole = _VAR.fullmatch(value.strip())
        if refs is not None and whole is not None:
            refs[path] = VarRef(whole.group(1), value.strip(), out)
        return out
    return value


def merge_sections(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """:func:`deep_merge` of sections, except that a ``store`` naming another backend replaces the base store."""
    store = override.get("store")
    if (
        isinstance(store, dict)
        and store.get("backend")
        and store["backend"] != (base.get("store") or {}).get("backend")
    ):
        base = {**base, "store": {}}
    return deep_merge(base, override)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_paths(sections: Sections, base: Path) -> Sections:
    def absolute(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    store = sections.store
    if isinstance(store, SQLiteStoreSettings) and str(store.path) != ":memory:":
        store = store.model_copy(update={"path": absolute(store.path)})
    return sections.model_copy(
        update={
            "workspace": sections.workspace.model_copy(
                update={
                    "base_dir": absolute(sections.workspace.base_dir),
                    "admin_paths": [absolute(p) for p in sections.workspace.admin_paths],
                }
            ),
            "agent": sections.agent.model_copy(update={"sessions_dir": absolute(sections.agent.sessions_dir)}),
            "store": store,
            "projects": {
                name: project.model_copy(update={"path": absolute(project.path)})
                for name, project in sections.projects.items()
            },
        }
    )


def describe_validation_error(
    exc: ValidationError, prefix: str = "", origins: Origins | None = None, *, sections: bool = False
) -> str:
    """One line per error, each naming what to fix (``agent.pool_size: Input should be greater than 0``).

    ``prefix`` (``bots.tg``) is where the validated mapping sits in the file; with ``origins``, a value
    from a ``CCBRIDGE_*`` variable or a ``${VAR}`` names that variable. ``sections``: the mapping is a
    bot's merged sections (environment overrides apply to them without the prefix).
    """
    base: Loc = tuple(prefix.split(".")) if prefix else ()
    origins = origins or Origins()
    lines = []
    for err in exc.errors():
        parts = [p for p in err["loc"] if p != "__root__"]
        # the store's discriminated union puts the backend's tag in the location: store.sqlite.path
        parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "store" and p in STORE_BACKEND_NAMES)]
        msg = _one_line(err["msg"].removeprefix("Value error, "))
        lines.append(origins.describe(tuple(parts), msg, base, sections=sections))
    return "\n".join(dict.fromkeys(lines))
