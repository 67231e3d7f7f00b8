"""Projects: which places a binding applies to (Discord, a reload, a /project switch) and when it applies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import DiscordPlace
from bots.discord import DiscordBot
from core import Agent, ConfigError, ConversationKey, Sections, UserRef
from core.config import config_from_dict, load_config
from core.dispatcher import Dispatcher, IncomingMessage
from tests.core.test_projects import CHANNEL, repo, say
from tests.discord.test_policies import place
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.recording_sink import RecordingSink


def discord_place(**fields: Any) -> DiscordPlace:
    return place(**{"mentioned": True, **fields})


async def test_discord_server_and_channel_bindings_apply_to_their_threads(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, payments: Path, tmp_path: Path
) -> None:
    web = repo(tmp_path / "web")
    sections = make_sections(
        projects={
            "payments": {"path": str(payments), "places": ["discord:guild/100"]},
            "web": {"path": str(web), "places": ["discord:channel/201"]},
        }
    )
    async with Agent(sections) as agent:
        bot = DiscordBot("discord", agent, DiscordBot.parse_settings("discord", {"token": "x"}))

        async def send(place: DiscordPlace, text: str) -> ConversationKey:
            key = bot._scoped_route(place)  # what the adapter does with every message
            assert key is not None
            await bot.dispatcher.handle(IncomingMessage(key, UserRef(place.user_id), text, RecordingSink()))
            return key

        in_server = await send(discord_place(), "hello")  # a mention in channel 200: a thread of the server
        in_channel = await send(discord_place(thread_id="400", channel_id="400", parent_id="201"), "hi")
        in_dm = await send(discord_place(direct=True, guild_id=None), "hey")
        projects = [(await agent.conversations.get(k)) for k in (in_server, in_channel, in_dm)]
        assert [c.metadata.get("project") if c else "?" for c in projects] == ["payments", "web", None]
        assert bot.places(in_channel) == ["discord:channel/201", "discord:guild/100"]  # the channel wins
        rebound = make_sections(
            projects={"payments": {"path": str(payments)}, "web": {"path": str(web), "places": ["discord:guild/100"]}}
        )
        assert agent.reload(rebound) == []
        await bot.dispatcher.handle(IncomingMessage(in_server, UserRef("u"), "/new", RecordingSink()))
        renewed = await agent.conversations.get(in_server)
        assert renewed is not None and renewed.metadata.get("project") == "web"  # /new asks the bot's places too


@pytest.mark.parametrize("place", ["discord:guild123", "discord:guild/abc", "discord:chan/5", "discord:#general"])
def test_a_mistyped_discord_place_is_a_config_error_naming_the_key(tmp_path: Path, place: str) -> None:
    config = config_from_dict({"projects": {"p": {"path": str(tmp_path), "places": [place]}}})
    with pytest.raises(ConfigError, match=r"^projects\.p\.places.*discord:guild/<server id>"):
        DiscordBot.check_places(config.projects)  # as the Discord bot does when it is built
    ok = ["discord:guild/123", "discord:channel/456", "discord:789", "slack:C0123"]
    DiscordBot.check_places(config_from_dict({"projects": {"p": {"path": str(tmp_path), "places": ok}}}).projects)


async def test_new_follows_the_place_s_current_binding_but_a_running_session_stays(
    project_sections: Sections, fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "hi", "t1", owner="C0OTHER")
        await say(d, "hi", "t2", owner="C0OTHER")
        t2 = ConversationKey("chat", "C0OTHER", "t2")
        assert "`payments`" in (await say(d, "/project payments", "t1", owner="C0OTHER", user="boss"))[0]
        conv = await agent.conversations.get(t2)
        assert conv is not None and "project" not in conv.metadata  # its session keeps its directory
        shown = (await say(d, "/project", "t2", owner="C0OTHER"))[0]
        assert "bound to: `payments`" in shown and "/new" in shown
        await say(d, "/new", "t2", owner="C0OTHER")
        conv = await agent.conversations.get(t2)
        assert conv is not None and conv.metadata["project"] == "payments"  # the new session follows the place
        await say(d, "/project none", "t1", owner="C0OTHER", user="boss")
        await say(d, "/new", "t2", owner="C0OTHER")
        conv = await agent.conversations.get(t2)
        assert conv is not None and "project" not in conv.metadata and Path(conv.cwd) == agent.workspaces.root(t2)
        # in a place bound by the config, /new stays in the project (and in its working directory)
        await say(d, "hi", "t3")
        await say(d, "/new", "t3")
        conv = await agent.conversations.get(ConversationKey("chat", CHANNEL, "t3"))
        assert conv is not None and conv.metadata["project"] == "payments"


async def test_a_reload_rebuilds_the_bindings(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, payments: Path, tmp_path: Path
) -> None:
    unbound = make_sections()
    bound = make_sections(projects={"payments": {"path": str(payments), "places": [f"chat:{CHANNEL}"]}})
    async with Agent(unbound) as agent:
        d = Dispatcher(agent)
        await say(d, "hi", "t1")
        assert agent.reload(bound) == []
        await say(d, "hi", "t2")  # a new conversation: bound
        t1, t2 = ConversationKey("chat", CHANNEL, "t1"), ConversationKey("chat", CHANNEL, "t2")
        assert (await agent.conversations.get(t2)).metadata["project"] == "payments"  # type: ignore[union-attr]
        assert "project" not in (await agent.conversations.get(t1)).metadata  # type: ignore[union-attr]
        await say(d, "/new", "t1")  # its next session follows the binding
        assert (await agent.conversations.get(t1)).metadata["project"] == "payments"  # type: ignore[union-attr]
        assert payments in agent.runtime.hidden  # its checkout is out of the sandbox's reach, like at start
        missing = make_sections(projects={"ghost": {"path": str(tmp_path / "nope"), "places": ["chat:C1"]}})
        with pytest.raises(ConfigError, match=r"^projects\.ghost\.path"):
            agent.reload(missing)
        assert set(agent.projects.settings) == {"payments"}  # an invalid reload changes nothing


def test_a_missing_path_is_a_config_error_naming_the_real_key(tmp_path: Path) -> None:
    ghost = {"ghost": {"path": str(tmp_path / "nope"), "places": ["chat:C1"]}}
    with pytest.raises(ConfigError, match=r"^projects\.ghost\.path: .* is not an existing directory"):
        config_from_dict({"projects": ghost})  # when the config is read, not at the first turn
    with pytest.raises(ConfigError, match=r"^projects\.ghost\.path"):
        config_from_dict({"projects": ghost, "bots": {"team": {"kind": "console", "projects": {}}}})
    with pytest.raises(ConfigError, match=r"^bots\.team\.projects\.ghost\.path: .* is not an existing directory"):
        config_from_dict({"bots": {"team": {"kind": "console", "projects": ghost}}})
    config_file = tmp_path / "config.yaml"
    config_file.write_text("projects:\n  ghost:\n    path: ./nope\n    places: ['chat:C1']\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file)  # relative to the config file's directory
    assert str(info.value) == f"projects.ghost.path: {tmp_path / 'nope'} is not an existing directory"
