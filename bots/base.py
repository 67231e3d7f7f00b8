"""What a ready-made bot is: an adapter plus its policies, run by ``run_bot.py``.

A bot kind is a module in ``bots/`` that exposes ``BOT``, a :class:`Bot`
subclass with its own pydantic ``Settings`` model (validated at start-up,
errors naming the key, e.g. ``bots.team.token``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core import Agent, ConfigError, Sections
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
