"""Transcripts in the store, with the real Claude Code CLI: a conversation resumes on a machine that never saw it.

Each "machine" is an Agent with its own HOME, Claude Code config directory and
sessions directory (so an empty ``~/.claude`` and no private transcript), sharing
the store and the workspace path (``workspace.base_dir``: the SDK's project key is
derived from the conversation's cwd).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from core import Agent, Sections
from core.store import StoreSettings
from tests.fakes.anthropic_api import FakeAnthropicAPI

pytestmark = pytest.mark.agent


def machine(make_sections: Callable[..., Sections], tmp_path: Path, name: str, store: dict[str, Any]) -> Sections:
    home = tmp_path / f"home-{name}"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    sections = make_sections(
        agent={
            "env": {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude")},
            "sessions_dir": str(tmp_path / f"sessions-{name}"),
        }
    )
    return sections.model_copy(update={"store": TypeAdapter(StoreSettings).validate_python(store)})


def transcripts_under(root: Path) -> list[Path]:
    return list(root.glob("**/projects/*/*.jsonl"))


@pytest.fixture(params=["redis", "postgres", "sqlite"])
def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return {"backend": "redis", "url": server.url, "key_prefix": f"{tmp_path.name}:"}
    if request.param == "postgres":
        return {"backend": "postgres", "dsn": request.getfixturevalue("postgres_dsn")}
    return {"backend": "sqlite", "path": str(tmp_path / "shared.db"), "transcripts": "store"}


async def test_a_conversation_resumes_on_a_machine_with_an_empty_claude_dir(
    make_sections: Callable[..., Sections], tmp_path: Path, fake_api: FakeAnthropicAPI, store_section: dict[str, Any]
) -> None:
    async with Agent(machine(make_sections, tmp_path, "a", store_section)) as first:
        one = await first.chat("the password is pineapple", user_id="alice")
        assert one.text == "echo: the password is pineapple" and not one.is_error
        two = await first.chat("and the colour is teal", user_id="alice")
        assert two.session_id == one.session_id
    assert transcripts_under(tmp_path / "sessions-a")

    assert not (tmp_path / "sessions-b").exists()
    async with Agent(machine(make_sections, tmp_path, "b", store_section)) as second:
        again = await second.chat("what was the password?", user_id="alice")
    assert not again.is_error, again.error
    assert again.session_id == one.session_id
    assert fake_api.requests[-1].user_texts()[-3:] == [
        "the password is pineapple",
        "and the colour is teal",
        "what was the password?",
    ]
    # the transcript was written into machine b's private config dir, and resumed from there
    [local] = transcripts_under(tmp_path / "sessions-b")
    assert local.name == f"{one.session_id}.jsonl" and "pineapple" in local.read_text()
    assert not list(Path("/tmp").glob("claude-resume-*/projects/*/" + local.name))  # not the SDK's shared temp dir


async def test_with_local_transcripts_another_machine_starts_without_memory(
    make_sections: Callable[..., Sections], tmp_path: Path, fake_api: FakeAnthropicAPI, redis_server: Any
) -> None:
    """The switch: ``store.transcripts: local`` keeps transcripts on the machine (and so this test can fail)."""
    store = {"backend": "redis", "url": redis_server.url, "key_prefix": f"{tmp_path.name}:", "transcripts": "local"}
    async with Agent(machine(make_sections, tmp_path, "a", store)) as first:
        assert first.transcripts is None
        await first.chat("the password is pineapple", user_id="alice")
    async with Agent(machine(make_sections, tmp_path, "b", store)) as second:
        again = await second.chat("what was the password?", user_id="alice")
    assert not again.is_error
    assert fake_api.requests[-1].user_texts() == ["what was the password?"]


async def test_deleting_a_conversation_deletes_the_transcripts_of_all_its_sessions(
    make_sections: Callable[..., Sections], tmp_path: Path, fake_api: FakeAnthropicAPI, store_section: dict[str, Any]
) -> None:
    async with Agent(machine(make_sections, tmp_path, "a", store_section)) as agent:
        first = await agent.chat("the password is pineapple", user_id="alice")
        conv = await agent.store.find_session(first.session_id)
        assert conv is not None
        key = conv.key
        await agent.conversations.reset(key)  # /new: the first session is remembered as an earlier one
        second = await agent.chat("the colour is teal", user_id="alice")
        assert second.session_id != first.session_id
        transcripts = agent.transcripts
        assert transcripts is not None
        stored = {k["session_id"] for k in await transcripts.keys()}
        assert {first.session_id, second.session_id} <= stored
        private = agent.runtime.homes.path(key)
        assert transcripts_under(private)

        assert await agent.conversations.delete(key)
        assert await agent.store.get(key) is None
        assert not {first.session_id, second.session_id} & {k["session_id"] for k in await transcripts.keys()}
        assert not private.exists()  # the private transcripts, todos and temp files went with it
        assert agent.workspaces.root(key).is_dir()  # the user's files stay

        again = await agent.chat("what was the password?", user_id="alice")
        assert again.session_id not in (first.session_id, second.session_id)
        assert "pineapple" not in str(fake_api.requests[-1].messages)  # nothing of the deleted sessions is resumed
