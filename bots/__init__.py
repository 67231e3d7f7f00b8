"""Ready-made bots. Each module here is a bot ``kind`` usable in ``config.yaml``."""

from __future__ import annotations

import importlib

from core import ConfigError

from .base import Bot, BotSettings

__all__ = ["Bot", "BotSettings", "load_bot_class"]


def load_bot_class(kind: str, *, name: str | None = None) -> type[Bot]:
    """The :class:`Bot` class of a kind ("console", "telegram", ...)."""
    where = f"bots.{name}.kind" if name else "kind"
    try:
        module = importlib.import_module(f"bots.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bots.{kind}":
            raise ConfigError(f"unknown bot kind {kind!r}", key=where) from None
        raise ConfigError(
            f"bot kind {kind!r} needs the package {exc.name!r}: pip install 'ccbridge[{kind}]'", key=where
        ) from None
    bot = getattr(module, "BOT", None)
    if not (isinstance(bot, type) and issubclass(bot, Bot)):
        raise ConfigError(f"bots/{kind} does not define a BOT class", key=where)
    return bot
