"""Configuration: one YAML file, ``${ENV}`` substitution, env overrides, pydantic validation.

Shared sections (``agent``, ``workspace``, ``store``, ``access``, ``reply``) apply to
every bot; each entry under ``bots:`` names its ``kind`` (a module in ``bots/``),
carries that bot's own settings, and may override any shared section.

Precedence, highest first: ``CCBRIDGE_<SECTION>__<KEY>`` environment variables
(they win over a bot's own overrides too), a bot's overrides, the YAML file's
shared sections, defaults. Relative paths are resolved against the config file's
directory. Every validation error names the offending key (``agent.pool_size``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .errors import ConfigError
from .store.settings import STORE_BACKEND_NAMES, SQLiteStoreSettings, StoreSettings

PermissionMode = Literal["default", "acceptEdits", "plan", "dontAsk", "bypassPermissions"]
Verbosity = Literal["quiet", "normal", "verbose"]
BusyPolicy = Literal["queue", "interrupt", "merge"]
SandboxMode = Literal["auto", "on", "off"]
SettingSource = Literal["user", "project", "local"]


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
    pool_size: int = Field(8, gt=0, description="Warm Claude Code processes kept for active conversations.")
    idle_timeout: float = Field(900.0, gt=0, description="Seconds before an idle warm process is closed.")
    max_processes: int | None = Field(
        None, gt=0, description="Most Claude Code processes alive at once (default: pool_size + 2); turns beyond wait."
    )
    max_spawns: int = Field(2, gt=0, description="Claude Code processes starting at the same time.")
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
        return self.max_processes or self.pool_size + 2

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
        description="Seconds a first message waits for more from the same person before the turn starts "
        "(0: off). Commands are never delayed.",
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


class CoordinationSettings(_Section):
    """What several instances of one bot share to agree (memory: a single instance)."""

    backend: Literal["memory", "redis"] = "memory"
    url: str | None = Field(None, description="redis:// URL for backend redis (default: $REDIS_URL).")
    instance_id: str | None = Field(
        None, description="This instance's id (default: the host name plus a hash of its home directory)."
    )
    key_prefix: str = "ccbridge:"
    lease_ttl: float = Field(15.0, gt=1, description="Seconds an instance's leases outlive its last heartbeat.")


class Sections(_Section):
    """The shared sections, as one bot sees them (after its overrides)."""

    agent: AgentSettings = Field(default_factory=AgentSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    store: StoreSettings = Field(default_factory=SQLiteStoreSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    reply: ReplySettings = Field(default_factory=ReplySettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)


SECTION_NAMES = tuple(Sections.model_fields)


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
        env_prefix="CCBRIDGE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    agent: AgentSettings = Field(default_factory=AgentSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    store: StoreSettings = Field(default_factory=SQLiteStoreSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    reply: ReplySettings = Field(default_factory=ReplySettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)
    bots: dict[str, BotEntry] = Field(default_factory=dict)
    log_level: str = "INFO"
    source: Path | None = Field(None, exclude=True, description="The file this was loaded from.")

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
            raise ConfigError(describe_validation_error(exc, prefix=f"bots.{name}")) from None
        return _resolve_paths(sections, self._base_dir())

    def _base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolved(self) -> Sections:
        return _resolve_paths(self.sections(), self._base_dir())


_AGENT_ENV_PREFIX = "CCBRIDGE_AGENT__ENV__"


class _EnvOverrides(EnvSettingsSource):
    """``CCBRIDGE_<SECTION>__<KEY>`` variables. Names are matched case-insensitively, but the
    variables given to the CLI (``CCBRIDGE_AGENT__ENV__ANTHROPIC_BASE_URL``) keep their case."""

    def __call__(self) -> dict[str, Any]:
        try:
            data = super().__call__()
        except SettingsError as exc:
            field = re.search(r'field "(\w+)"', str(exc))
            section = field.group(1) if field else "<section>"
            raise ConfigError(
                f"a CCBRIDGE_{section.upper()}__* environment variable is not valid: lists and maps must be "
                """JSON, e.g. CCBRIDGE_AGENT__ALLOWED_TOOLS='["Read"]'""",
                key=section,
            ) from None
        agent = data.get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("env"), dict):
            agent["env"] = {
                name[len(_AGENT_ENV_PREFIX) :]: value
                for name, value in os.environ.items()
                if name.upper().startswith(_AGENT_ENV_PREFIX) and len(name) > len(_AGENT_ENV_PREFIX)
            }
        return data


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Load, substitute and validate a config file (or only defaults + env when ``path`` is None)."""
    raw: dict[str, Any] = {}
    source: Path | None = None
    if path is not None:
        source = Path(path).resolve()
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror or exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source} must hold a mapping of sections at the top level")
        raw = _substitute(loaded, os.environ, "")
    return config_from_dict(raw, source=source)


def config_from_dict(raw: dict[str, Any], *, source: Path | None = None) -> AppConfig:
    """Validate an already-loaded mapping (``CCBRIDGE_*`` env overrides still apply)."""
    try:
        return AppConfig(**raw, source=source)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _substitute(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)", key=where
            )

        return _VAR.sub(repl, value)
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
        }
    )


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if p != "__root__"]
        # the store's discriminated union puts the backend's tag in the location: store.sqlite.path
        parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "store" and p in STORE_BACKEND_NAMES)]
        loc = ".".join(parts)
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(top level)'}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
