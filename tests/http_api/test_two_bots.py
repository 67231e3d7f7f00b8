"""Two HTTP API bots on one store (as run_bot.py runs them: one agent each, one store, one workspace
directory) never share a session, a workspace or a listing: the bot named ``api`` keeps the plain keys
(shared with the library's ``Agent.chat(user_id=...)``), another one scopes its keys by its name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bots import load_bot_class
from core import Agent, ConversationKey, Sections
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import KEY, serve

USER = "u"
PLAIN = ConversationKey("api", USER)
SCOPED = ConversationKey("api", USER, bot="partner")


@dataclass
class Served:
    agent: Agent
    client: httpx.AsyncClient


@asynccontextmanager
async def two_bots(make_sections: Callable[..., Sections]) -> AsyncIterator[tuple[Served, Served]]:
    """The bots ``api`` and ``partner`` (kind http_api), each served by the app its bot builds."""
    bot_class = load_bot_class("http_api")
    async with AsyncExitStack() as stack:
        served = []
        for name in ("api", "partner"):
            agent = await stack.enter_async_context(Agent(make_sections()))
            bot = bot_class(name, agent, bot_class.parse_settings(name, {"api_keys": [KEY], "max_concurrent_turns": 4}))
            assert bot.scope == (None if name == "api" else name) and agent.prewarm.scope == ("api", bot.scope)
            base_url = await stack.enter_async_context(serve(bot.server().config.app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=60, headers={"X-API-Key": KEY})
            )
            served.append(Served(agent, client))
        yield served[0], served[1]


async def chat(client: httpx.AsyncClient, text: str, **fields: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/chat", json={"text": text, "user_id": USER, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_one_user_on_two_http_api_bots_has_two_sessions_and_workspaces(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with two_bots(make_sections) as (api, partner):
        assert (await chat(api.client, "my name is Ada, remember it"))["text"] == "echo: my name is Ada, remember it"
        reply = await chat(partner.client, "what is my name?")
        assert reply["text"] == "echo: what is my name?"
        assert "my name is Ada" not in str(fake_api.requests[-1].messages)  # the partner's session knows nothing

        one, two = await api.agent.conversations.get(PLAIN), await api.agent.conversations.get(SCOPED)
        assert one is not None and two is not None  # one store: both records are there, under their own keys
        assert one.session_id != two.session_id and reply["session_id"] == two.session_id
        assert await api.agent.conversations.get(ConversationKey("api", USER, bot="api")) is None
        root_one, root_two = api.agent.workspaces.root(PLAIN), partner.agent.workspaces.root(SCOPED)
        assert root_one != root_two and root_two.parent.name == "api@partner"
        assert Path(one.cwd) == root_one and Path(two.cwd) == root_two and root_one.is_dir() and root_two.is_dir()

        # each bot's next turn continues its own session
        again = await chat(partner.client, "and now?")
        assert again["session_id"] == two.session_id
        assert "what is my name?" in str(fake_api.requests[-1].messages)
        assert "my name is Ada" not in str(fake_api.requests[-1].messages)
        compat = await partner.client.post("/chat", json={"message": "compat too", "user_id": USER})
        assert compat.status_code == 200 and compat.json()["claude_session_id"] == two.session_id
        v2 = await partner.client.post("/api/v2/sessions", json={"user_id": USER, "subdir": "work"})
        assert v2.status_code == 201 and v2.json()["cwd"] == "work"
        assert (root_two / "work").is_dir() and not (root_one / "work").exists()
        created = await partner.agent.conversations.find_session(v2.json()["id"])
        assert created is not None and created.key.bot == "partner"


async def test_listings_and_session_ids_stay_on_their_bot(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with two_bots(make_sections) as (api, partner):
        mine = (await chat(api.client, "on api"))["session_id"]
        theirs = (await chat(partner.client, "on partner"))["session_id"]
        named = (await partner.client.post("/api/v1/sessions", json={"user_id": USER})).json()["session_id"]
        notes = await partner.client.post("/chat", json={"message": "named", "user_id": USER, "session_id": "notes"})
        assert notes.status_code == 200, notes.text

        async def listed(served: Served, **params: Any) -> list[str]:
            answer = await served.client.get("/api/v1/sessions", params=params)
            assert answer.status_code == 200, answer.text
            return answer.json()

        assert await listed(api, user_id=USER) == await listed(api) == [mine]
        partner_ids = await listed(partner, user_id=USER)
        assert set(partner_ids) == set(await listed(partner)) and mine not in partner_ids
        assert {theirs, named} < set(partner_ids) and len(partner_ids) == 3  # and "notes"
        # the partner's conversations are the most recent: a short listing of the api bot still finds its own
        assert await listed(api, limit=1) == await listed(api, user_id=USER, limit=1) == [mine]
        v2_api = (await api.client.get("/api/v2/sessions", params={"user_id": USER, "limit": 1})).json()
        assert [s["id"] for s in v2_api["sessions"]] == [mine]
        v2_partner = (await partner.client.get("/api/v2/sessions", params={"user_id": USER})).json()
        assert [s["id"] for s in v2_partner["sessions"]] == partner_ids

        # a session id of one bot is an unknown session on the other, on every route
        for served, other in ((api, theirs), (partner, mine)):
            client = served.client
            for answer in (
                await client.get(f"/api/v1/sessions/{other}"),
                await client.get(f"/api/v2/sessions/{other}"),
                await client.get(f"/api/v1/sessions/{other}/history"),
                await client.post(f"/api/v1/sessions/{other}/resume"),
                await client.post(f"/api/v2/sessions/{other}/resume"),
                await client.get(f"/api/v1/sessions/{other}/files"),
                await client.post("/api/v1/chat", json={"text": "hi", "user_id": USER, "session_id": other}),
                await client.post("/api/v1/chat", json={"text": "hi", "session_id": other}),
                await client.delete(f"/api/v1/sessions/{other}"),
                await client.get(f"/session/{other}/history"),
                await client.delete(f"/session/{other}"),
            ):
                assert answer.status_code == 404, (answer.request.url, answer.text)
        # a compat name of the partner's is no session of the api bot's either
        assert (await api.client.get("/session/notes/history")).status_code == 404
        assert (await partner.client.get("/session/notes/history")).status_code == 200
        # nothing was deleted or touched
        for session_id in (mine, theirs, named):
            assert await api.agent.conversations.find_session(session_id) is not None
        assert (await partner.client.get(f"/api/v1/sessions/{theirs}/history")).json()["turns"][-1]["user_text"] == (
            "on partner"
        )


async def test_the_library_continues_the_api_bots_conversation(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with two_bots(make_sections) as (api, partner):
        over_http = await chat(api.client, "my name is Ada, remember it")
        await chat(partner.client, "I am someone else")
        result = await api.agent.chat("what is my name?", user_id=USER)
        assert result.key == PLAIN and result.session_id == over_http["session_id"]
        assert "my name is Ada" in str(fake_api.requests[-1].messages)
        assert "I am someone else" not in str(fake_api.requests[-1].messages)
        history = (await api.client.get(f"/api/v1/sessions/{result.session_id}/history")).json()
        assert [t["user_text"] for t in history["turns"]] == ["my name is Ada, remember it", "what is my name?"]
