"""What a ready-made bot is: an adapter plus its policies, run by ``run_bot.py``.

A bot kind is a module in ``bots/`` that exposes ``BOT``, a :class:`Bot`
subclass with its own pydantic ``Settings`` model (validated at start-up,
errors naming the key, e.g. ``bots.team.token``). A chat platform's bot is a
:class:`ChatBot`: its ``Adapter`` (a :class:`~core.adapter.ChatAdapter`) and its
``route`` policy — which conversation a message belongs to, if any.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core import Agent, ConfigError, ConversationKey, Dispatcher, Sections
from core.adapter import ChatAdapter
from core.config import describe_validation_error


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
        """Start-up warnings (e.g. nobody on the allowlist)."""
        return self.agent.access.startup_warnings(self.platform) if self.chat_platform else []

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
        self.dispatcher = Dispatcher(agent, name=name)
        legacy = self.legacy_upload_limit_mb()
        if legacy is not None:
            self.dispatcher.intake.max_bytes = int(legacy * 1024 * 1024)
        self.dispatcher.places_of = self.places
        self.adapter = self.Adapter(settings, self.dispatcher, self._scoped_route, where=f"bots.{name}")

    def places(self, key: ConversationKey) -> list[str]:
        """The names the place of ``key`` goes by in ``projects.*.places`` (default: ``platform:owner``)."""
        return [key.place]

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
        await self.adapter.run()
