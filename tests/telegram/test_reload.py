"""SIGHUP re-reads the config file: the allowlist changes without a restart; an invalid file changes nothing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import bot_process

from .fake_bot_api import FakeBotAPI
from .people import ADA, ADA_DM


def config(bot_api: FakeBotAPI, cli_env: dict[str, str], allowlist: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "agent": {"env": cli_env},
        "workspace": {"base_dir": "ws"},
        "access": {"allowlist": allowlist, "refusal": "not on the allowlist"},
        "log_level": "INFO",
        "bots": {
            "telegram": {
                "kind": "telegram",
                "token": bot_api.token,
                "base_url": bot_api.base_url,
                "base_file_url": bot_api.base_file_url,
                "poll_timeout": 1,
                "edit_interval": 0.05,
            }
        },
        **extra,
    }


async def test_sighup_reloads_the_allowlist_and_an_invalid_file_keeps_the_running_one(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI, bot_api: FakeBotAPI
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(bot_api, cli_env, ["telegram:1"])))
    async with bot_process(path, tmp_path) as bot:
        await bot.logged("starting telegram")
        bot_api.say(ADA_DM, ADA, "hello?")
        await bot_api.wait_for(lambda: bot_api.texts(42), what="the refusal")
        assert bot_api.texts(42) == ["not on the allowlist"]

        path.write_text(yaml.safe_dump(config(bot_api, cli_env, ["telegram:1", "telegram:42"])))
        bot.proc.send_signal(signal.SIGHUP)
        await bot.logged("configuration reloaded")
        bot_api.say(ADA_DM, ADA, "and now?")
        await bot_api.wait_for(lambda: "echo: and now?" in bot_api.texts(42), what="the answer")

        broken = config(bot_api, cli_env, ["telegram:1"])
        broken["access"]["allowlist"] = ["not-an-entry"]
        path.write_text(yaml.safe_dump(broken))
        bot.proc.send_signal(signal.SIGHUP)
        failure = await bot.logged("reload failed, keeping the running configuration")
        assert "access.allowlist" in failure and failure.count("\n") == 1  # one line, naming the key
        bot_api.say(ADA_DM, ADA, "still?")
        await bot_api.wait_for(lambda: "echo: still?" in bot_api.texts(42), what="the answer")
