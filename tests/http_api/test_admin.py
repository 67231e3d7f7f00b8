"""``/admin``: admin keys only; access granted and revoked as the chat's /allow and /revoke do (the same
grants in the store); ``POST /admin/reload``; the user allowlist matches whole ids only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from adapters.http_api.auth import UserAllowlist
from adapters.http_api.settings import key_fingerprint
from bots import load_bot_class
from bots.telegram import TelegramBot
from core import Agent, ConfigError, Sections
from core.grants import AccessGrants
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import eventually
from tests.telegram.conftest import bot_settings
from tests.telegram.fake_bot_api import FakeBotAPI
from tests.telegram.people import ADA, ADA_DM

from .conftest import ADMIN_KEY, KEY, Api, running_api

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADMIN_KEYS = [{"name": "ops", "key": ADMIN_KEY}]


def admin_api(make_api: Callable[..., Any], **overrides: Any) -> Any:
    return make_api(admin_keys=ADMIN_KEYS, **overrides)


async def status_of(api: Api, user_id: str) -> int:
    """What the API answers a call acting as ``user_id`` (no turn: the user's sessions)."""
    return (await api.client.get("/api/v1/sessions", params={"user_id": user_id})).status_code


# -- admin keys ---------------------------------------------------------------------
async def test_admin_routes_need_an_admin_key_and_api_keys_get_403(make_api: Any) -> None:
    async with admin_api(make_api) as api, api.anonymous() as client:
        schema = (await client.get("/openapi.json")).json()
        calls = [(m.upper(), p) for p, ops in schema["paths"].items() if p.startswith("/admin") for m in ops]
        assert set(calls) == {
            ("GET", "/admin/users"),
            ("POST", "/admin/users"),
            ("DELETE", "/admin/users/{entry}"),
            ("POST", "/admin/reload"),
        }
        for method, path in calls:
            url = path.replace("{entry}", "bob")
            for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": ""}, {"Authorization": "Bearer"}):
                resp = await client.request(method, url, json={"user": "bob"}, headers=headers)
                assert resp.status_code == 401, (method, path, headers)
                assert resp.json()["error"]["code"] == "unauthorized" and resp.headers["www-authenticate"] == "Bearer"
            for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):  # a valid key, not an admin's
                resp = await client.request(method, url, json={"user": "bob"}, headers=headers)
                assert resp.status_code == 403, (method, path, headers)
                assert resp.json()["error"]["code"] == "admin_key_required"
            resp = await client.request(method, url, json={"user": "bob"}, headers={"X-API-Key": ADMIN_KEY})
            assert resp.status_code not in (401, 403), (method, path)
        # an admin key is no API key: the sessions, chat and compat routes refuse it
        assert (await client.get("/api/v1/sessions", params={"user_id": "k"}, headers=ADMIN)).status_code == 401
        assert (await client.post("/chat", json={"message": "hi"}, headers=ADMIN)).status_code == 401


async def test_without_admin_keys_there_are_no_admin_endpoints(make_api: Any) -> None:
    async with make_api(admin_keys=["", "  "]) as api:  # blank (unset ${VAR:-}) keys are no keys
        assert not api.ctx.settings.admin_keys
        assert not [p for p in (await api.client.get("/openapi.json")).json()["paths"] if p.startswith("/admin")]
        for method, url in (("GET", "/admin/users"), ("POST", "/admin/users"), ("POST", "/admin/reload")):
            assert (await api.client.request(method, url, json={"user": "x"})).status_code == 404
            assert (await api.client.request(method, url, json={"user": "x"}, headers=ADMIN)).status_code == 404
    async with make_api(api_keys=[], allow_anonymous=True, admin_keys=ADMIN_KEYS) as api, api.anonymous() as client:
        assert (await client.get("/api/v1/sessions", params={"user_id": "k"})).status_code == 200  # anonymous API
        assert (await client.get("/admin/users")).status_code == 401  # ... but never anonymous admin
        assert (await client.get("/admin/users", headers=ADMIN)).status_code == 200


def test_admin_key_settings() -> None:
    bot = load_bot_class("http_api")
    base: dict[str, Any] = {"api_keys": [KEY]}
    plain = bot.parse_settings("api", {**base, "admin_keys": [ADMIN_KEY, {"name": "ops", "key": "o" * 32}]})
    [unnamed, named] = plain.admin_keys  # type: ignore[attr-defined]
    assert unnamed.name == key_fingerprint(ADMIN_KEY) and ADMIN_KEY not in unnamed.name
    assert unnamed.name.startswith("sha256:") and len(unnamed.name) == len("sha256:") + 12
    assert named.name == "ops" and ADMIN_KEY not in repr(plain) and "o" * 32 not in repr(plain)
    blank = bot.parse_settings("api", {**base, "admin_keys": ["", {"name": "ops", "key": "  "}]})
    assert blank.admin_keys == []  # type: ignore[attr-defined]
    for admin_keys, problem in (
        ([KEY], "a key is also in api_keys"),
        ([{"name": "ops", "key": "a" * 32}, {"name": "ops", "key": "b" * 32}], "same name"),
        ([{"name": "has space", "key": "a" * 32}], "admin_keys.0.name"),
        ([{"key": "a" * 32}], "admin_keys.0.name"),
    ):
        with pytest.raises(ConfigError, match=problem) as err:
            bot.parse_settings("api", {**base, "admin_keys": admin_keys})
        assert "bots.api" in str(err.value)
    with pytest.raises(ConfigError, match="admin_bots"):
        bot.parse_settings("api", {**base, "admin_bots": ["tele:gram"]})


# -- this API's own users ---------------------------------------------------------------
async def test_grant_list_and_revoke_this_apis_users_logged_with_the_keys_name(
    make_api: Any,
    agent: Agent,
    fake_api: FakeAnthropicAPI,
    make_sections: Callable[..., Sections],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with admin_api(make_api, allowed_users=["alice"]) as api:
        assert await status_of(api, "bob") == 403
        granted = await api.client.post("/admin/users", json={"user": "bob"}, headers=ADMIN)
        assert granted.status_code == 201, granted.text
        body = granted.json()
        assert (body["bot"], body["entry"], body["granted"], body["in_config"]) == ("agent", "api:bob", True, False)
        assert body["granted_by"] == "admin_key:ops" and body["granted_at"]
        assert await status_of(api, "bob") == 200  # at once, without a restart
        again = await api.client.post("/admin/users", json={"user": "api:bob"}, headers=ADMIN)  # "api:" optional
        assert again.status_code == 200 and again.json()["granted"] is False
        listing = (await api.client.get("/admin/users", headers=ADMIN)).json()
        assert listing["bot"] == "agent" and listing["everyone"] is False
        assert [(u["entry"], u["source"], u["setting"], u["granted_by"]) for u in listing["users"]] == [
            ("api:alice", "config", "bots.agent.allowed_users", None),
            ("api:bob", "granted", None, "admin_key:ops"),
        ]
    # grants live in the store: a restarted API (a new agent on the same store) still admits bob
    async with Agent(make_sections()) as restarted:
        async with running_api(restarted, fake_api, admin_keys=ADMIN_KEYS, allowed_users=["alice"]) as api:
            assert await status_of(api, "bob") == 200
            alice = await api.client.delete("/admin/users/alice", headers=ADMIN)
            assert alice.status_code == 409 and alice.json()["error"]["code"] == "in_config"
            assert "remove it there" in alice.json()["error"]["message"]
            revoked = await api.client.delete("/admin/users/bob", headers=ADMIN)
            assert revoked.status_code == 200
            assert revoked.json() == {"bot": "agent", "entry": "api:bob", "revoked": True, "still_allowed": False}
            assert await status_of(api, "bob") == 403
            gone = await api.client.delete("/admin/users/bob", headers=ADMIN)
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "grant_not_found"
    changes = [r.getMessage() for r in caplog.records if r.name == "core.grants"]
    assert changes == [
        "access to bot agent granted to api:bob by admin_key:ops",
        "access to bot agent revoked from api:bob by admin_key:ops",
    ]
    assert not [r for r in caplog.records if ADMIN_KEY in r.getMessage()]  # the key itself is never logged


async def test_a_grant_on_another_instance_is_seen_within_seconds(
    make_api: Any, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.grants.REFRESH_AFTER", 0.0)
    async with admin_api(make_api, allowed_users=["alice"]) as api:
        assert await status_of(api, "carol") == 403
        await AccessGrants(agent.store, "agent").grant("api:carol", "admin_key:elsewhere")  # another instance's
        assert await status_of(api, "carol") == 200
        await AccessGrants(agent.store, "agent").revoke("api:carol", "admin_key:elsewhere")
        assert await status_of(api, "carol") == 403


async def test_entries_that_name_nobody_are_422(make_api: Any) -> None:
    async with admin_api(make_api, admin_bots=["team_tg"]) as api:
        for bot, user in (
            (None, "*"),
            (None, "api:"),
            (None, "   "),
            (None, "bo\x00b"),
            (None, "x" * 129),
            ("team_tg", "42"),  # a chat bot's entry names the platform
            ("team_tg", "telegram:*"),
            ("team_tg", "telegram:role:"),
            ("team_tg", "telegram:4 2"),
            ("team_tg", "telegram:a:b"),
        ):
            resp = await api.client.post("/admin/users", json={"user": user, "bot": bot}, headers=ADMIN)
            assert resp.status_code == 422, (bot, user)
            assert resp.json()["error"]["code"] == "invalid_request" and resp.json()["error"]["fields"], (bot, user)
        assert (await api.client.get("/admin/users", headers=ADMIN)).json()["users"] == []
        unknown = await api.client.get("/admin/users", params={"bot": "nope"}, headers=ADMIN)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "bot_not_found"
        assert "team_tg" in unknown.json()["error"]["message"]


# -- a chat bot's access -------------------------------------------------------------------
async def test_a_grant_over_http_lets_a_user_into_the_telegram_bot_of_that_name(
    make_api: Any,
    make_sections: Callable[..., Sections],
    fake_api: FakeAnthropicAPI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("core.grants.REFRESH_AFTER", 0.0)  # the bot re-reads the grants on every message
    caplog.set_level(logging.INFO, logger="core.dispatcher")

    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused telegram:42")]

    access = {"allow_all": False, "allowlist": ["telegram:1"], "refusal": "not on the allowlist"}
    async with FakeBotAPI() as bot_api, admin_api(make_api, admin_bots=["telegram"]) as api:
        chat_agent = await Agent(make_sections(access=access)).start()  # the same store as the API's
        api.ctx.bot_access = {"telegram": chat_agent.sections.access}.get  # as run_bot hands the config's in
        bot = TelegramBot("telegram", chat_agent, bot_settings(bot_api))
        await bot.adapter.start()
        try:
            bot_api.say(ADA_DM, ADA, "hello?")
            await bot_api.wait_for(lambda: bot_api.texts(42) == ["not on the allowlist"], what="the refusal")
            resp = await api.client.post("/admin/users", json={"user": "telegram:42", "bot": "telegram"}, headers=ADMIN)
            assert resp.status_code == 201 and resp.json()["entry"] == "telegram:42"
            bot_api.say(ADA_DM, ADA, "and now?")
            await bot_api.wait_for(lambda: "echo: and now?" in bot_api.texts(42), what="the answer")
            # a /allow in the chat is listed here, with who made it
            await bot.dispatcher.grants.grant("telegram:7", "telegram:1")
            listing = (await api.client.get("/admin/users", params={"bot": "telegram"}, headers=ADMIN)).json()
            assert listing["bot"] == "telegram" and listing["everyone"] is False
            by = {u["entry"]: (u["source"], u["granted_by"]) for u in listing["users"]}
            assert by == {
                "telegram:1": ("config", None),
                "telegram:42": ("granted", "admin_key:ops"),
                "telegram:7": ("granted", "telegram:1"),
            }
            revoked = await api.client.delete("/admin/users/telegram:42", params={"bot": "telegram"}, headers=ADMIN)
            assert revoked.status_code == 200
            bot_api.say(ADA_DM, ADA, "still there?")
            await eventually(lambda: len(refused()) == 2, what="the second refusal")  # told once per cooldown
            assert "echo: still there?" not in bot_api.texts(42)
        finally:
            await bot.adapter.stop(drain_timeout=5)
            await chat_agent.close()


# -- the allowlist matches whole ids ---------------------------------------------------------
NEAR_MISSES = ["alic", "alice2", "alice/x", "xalice", "Alice", "ALICE", "alice ", " alice", "alice\u200b", "al", "a"]


def test_the_user_allowlist_never_matches_a_prefix_or_an_extension() -> None:
    users = UserAllowlist(["alice", "team/bob"], granted=["carol"])
    assert users.allows("alice") and users.allows("team/bob") and users.allows("carol")
    for near in [*NEAR_MISSES, "team", "team/", "team/bob/x", "team/bo", "caro", "carol2", "carol/x"]:
        assert not users.allows(near), near
    assert UserAllowlist([]).allows("anyone") and UserAllowlist([], granted=["carol"]).allows("anyone")


async def test_allowed_users_refuses_near_miss_ids_over_http(make_api: Any) -> None:
    async with admin_api(make_api, allowed_users=["alice"]) as api:
        assert await status_of(api, "alice") == 200
        for near in NEAR_MISSES:
            resp = await api.client.get("/api/v1/sessions", params={"user_id": near})
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "user_not_allowed", near
        await api.client.post("/admin/users", json={"user": "bob"}, headers=ADMIN)
        for near in ("bo", "bob2", "bob/x", "Bob"):
            assert await status_of(api, near) == 403, near
        assert await status_of(api, "bob") == 200
