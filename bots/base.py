"""What a ready-made bot is: an adapter plus its policies, run by ``run_bot.py``.

A bot kind is a module in ``bots/`` that exposes ``BOT``, a :class:`Bot`
subclass with its own pydantic ``Settings`` model (validated at start-up,
errors naming the key, e.g. ``bots.team.token``). A chat platform's bot is a
:class:`ChatBot`: its ``Adapter`` (a :class:`~core.adapter.ChatAdapter`) and its
``route`` policy — which conversation a message belongs to, if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core import Agent, ConfigError, ConversationKey, Dispatcher, Sections
from core.adapter import ChatAdapter
from core.config import AccessSettings, ProjectSettings, describe_validation_error
from core.deployment import shared_storage_warnings

log = logging.getLogger(__name__)


#: Re-reads the config file for every bot of the process (``run_bot.ConfigReloader.reload``): by bot name,
#: the settings that need a restart; raises :class:`~core.ConfigError` (logged) when the file is invalid.
ConfigReloader = Callable[[], Awaitable[Mapping[str, list[str]]]]


class BotSettings(BaseModel):
    """Base for a bot kind's own settings (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")


class Bot(ABC):
    kind: ClassVar[str]
    platform: ClassVar[str]
    Settings: ClassVar[type[BotSettings]] = BotSettings
    #: True for bots that talk to a chat platform (False: console, HTTP API)
    chat_platform: ClassVar[bool] = True

    def __init__(self, name: str, agent: Agent, settings: BotSettings) -> None:
        self.name = name
        self.agent = agent
        self.settings = settings
        #: set by run_bot: re-reads the config file (e.g. for the HTTP API's ``POST /admin/reload``)
        self.reloader: ConfigReloader | None = None
        #: set by run_bot (and renewed by a reload): every configured bot's ``access`` section after its
        #: overrides, for a bot that manages other bots' access (the HTTP API's ``admin_bots``)
        self.bots_access: dict[str, AccessSettings] = {}
        #: set by run_bot: seconds its stop lets messages in flight finish (they are stopped meanwhile if
        #: they outlast the process's drain_timeout)
        self.drain_timeout = 10.0
        self._scope_prewarm(None)

    def _scope_prewarm(self, scope: str | None) -> None:
        """Pre-warm only this bot's conversations (the store may be shared with other bots)."""
        platform = getattr(self, "platform", None)
        if platform is not None:
            self.agent.prewarm.scope = (platform, scope)

    def reload(self, settings: BotSettings) -> list[str]:
        """Take this bot's re-read settings (a config reload); returns the keys that need a restart.

        By default a bot's own settings (tokens, ports) keep their running values: each one that
        changed is named.
        """
        fields = type(settings).model_fields
        return [f"bots.{self.name}.{f}" for f in fields if getattr(settings, f) != getattr(self.settings, f, None)]

    @classmethod
    def parse_settings(cls, name: str, raw: dict[str, Any]) -> BotSettings:
        try:
            return cls.Settings.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, prefix=f"bots.{name}")) from None

    @classmethod
    def adjust_sections(cls, sections: Sections) -> Sections:
        """The kind's fixed policies applied to the shared sections (default: none)."""
        return sections

    def describe(self) -> str:
        """One line for ``run_bot.py --check``."""
        return f"{self.name} ({self.kind})"

    def warnings(self) -> list[str]:
        """Start-up warnings (e.g. nobody on the allowlist, local storage behind shared coordination)."""
        out = shared_storage_warnings(self.agent.sections)
        if self.chat_platform:
            out += self.agent.access.startup_warnings(self.platform)
        return out

    @abstractmethod
    async def run(self) -> None:
        """Run until cancelled; clean up on the way out."""


def bot_scope(name: str, platform: str) -> str | None:
    """The conversation-key scope of bot ``name``: none for the bot named after its platform.

    So the usual single ``telegram`` bot keeps plain keys (and workspaces), while a second
    bot of the same platform ("team_tg") never shares a conversation, workspace or lock with it.
    """
    return None if name == platform else name


class ChatBot(Bot):
    """A chat platform's bot: an adapter fed to a dispatcher, and the policy of who is answered where."""

    Adapter: ClassVar[type[ChatAdapter[Any]]]

    def __init__(self, name: str, agent: Agent, settings: BotSettings) -> None:
        super().__init__(name, agent, settings)
        self.scope = bot_scope(name, self.platform)
        self._scope_prewarm(self.scope)
        self.dispatcher = Dispatcher(agent, name=name)
        legacy = self.legacy_upload_limit_mb()
        if legacy is not None:
            self.dispatcher.intake.max_bytes = int(legacy * 1024 * 1024)
        self.dispatcher.places_of = self.places
        self.check_places(agent.sections.projects)
        self.adapter = self.Adapter(settings, self.dispatcher, self._scoped_route, where=f"bots.{name}")

    def places(self, key: ConversationKey) -> list[str]:
        """The names the place of ``key`` goes by in ``projects.*.places`` (default: ``platform:owner``)."""
        return [key.place]

    @classmethod
    def place_problem(cls, where: str) -> str | None:
        """What is wrong with ``<platform>:<where>`` as a place of this platform (None: it can match)."""
        return None

    @classmethod
    def check_places(cls, projects: Mapping[str, ProjectSettings]) -> None:
        """A ``projects.*.places`` entry of this platform that can never match is a :class:`ConfigError`."""
        for name, project in projects.items():
            for place in project.places:
                platform, _, where = place.partition(":")
                problem = cls.place_problem(where) if platform == cls.platform else None
                if problem is not None:
                    raise ConfigError(f"{place!r} {problem}", key=f"projects.{name}.places")

    def legacy_upload_limit_mb(self) -> float | None:
        """A file size limit set with the adapter's old key (before ``workspace.max_upload_mb``)."""
        return None

    def warnings(self) -> list[str]:
        out = super().warnings()
        if self.legacy_upload_limit_mb() is not None:
            out.append(
                f"bots.{self.name}: the adapter's own file size key is deprecated; "
                f"set workspace.max_upload_mb (or bots.{self.name}.workspace.max_upload_mb) instead."
            )
        return out

    @abstractmethod
    def route(self, place: Any) -> ConversationKey | None:
        """The conversation a message written at ``place`` belongs to; None: not for the bot."""

    def _scoped_route(self, place: Any) -> ConversationKey | None:
        key = self.route(place)
        return key.scoped(self.scope) if key is not None else None

    async def run(self) -> None:
        backend = getattr(self.agent.coordination, "backend", None)
        if backend is None or not self.adapter.single_connection:
            await self.adapter.run(self.drain_timeout)
            return
        await self._run_as_leader(backend)

    async def _run_as_leader(self, backend: Any) -> None:
        """Several instances, one connection allowed: connect while holding the leader lease, stand by otherwise.

        A standby instance still runs the conversations it owns (messages reach it through the
        coordination Redis); when the leader dies, its lease lapses and another instance connects.
        A connection that ends for good while leading (a revoked token: ``ConfigError``) ends the bot
        with that error; one that just ends gives the lease up, so this or another instance reconnects.
        """
        lease = "connection"
        renew_every = backend.lease_ms / 3000
        try:
            while True:
                while not await backend.leader(lease):  # noqa: ASYNC110 (a lease in Redis, polled)
                    await asyncio.sleep(min(1.0, renew_every))
                log.info("%s: this instance holds the platform connection", self.name)
                served: asyncio.Future[None] | None = None
                try:
                    await self.adapter.start()
                    served = asyncio.ensure_future(self.adapter.serve())
                    while not served.done() and await backend.leader(lease):
                        await asyncio.wait({served}, timeout=renew_every)  # renewing the lease meanwhile
                    if served.done():
                        served.result()  # the connection's fatal error, if it had one
                        log.warning("%s: the platform connection ended; giving the leader lease up", self.name)
                        await backend.resign(lease)
                    else:
                        log.warning("%s: lost the leader lease; disconnecting", self.name)
                finally:
                    if served is not None and not served.done():
                        served.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await served
                    await self.adapter.stop(self.drain_timeout)
                    self.adapter = self.Adapter(
                        self.settings, self.dispatcher, self._scoped_route, where=f"bots.{self.name}"
                    )
        finally:
            await asyncio.shield(backend.resign(lease))
