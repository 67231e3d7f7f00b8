"""API keys, admin keys and the user allowlist (``adapters.http_api.auth``), in process.

The route dependencies are served by a bare FastAPI app over httpx's ASGI transport (no
uvicorn, no agent), with a stand-in for the API's context holding just the keys; the HTTP
API's own suites (``test_security.py``, ``test_admin.py``) check the same over real servers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from adapters.http_api.auth import AdminKeys, ApiKeys, UserAllowlist, require_admin, require_api_key
from adapters.http_api.errors import ApiError, install_error_handlers

KEY = "api-key-0123456789"
OTHER = "api-key-9876543210"
ADMIN = "admin-key-0123456789"
BACKUP = "admin-key-9876543210"


# -- the key checks -----------------------------------------------------------------------------
def test_api_keys_accept_exactly_the_configured_keys() -> None:
    keys = ApiKeys([KEY, OTHER])
    assert keys.required
    assert keys.accepts(KEY) and keys.accepts(OTHER)
    for near in (None, "", "   ", KEY[:-1], KEY + "x", " " + KEY, KEY.upper(), "api-key-"):
        assert not keys.accepts(near), near
    assert not ApiKeys([]).required and not ApiKeys([]).accepts(KEY)


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_key_is_refused_at_once(blank: str) -> None:
    with pytest.raises(ValueError) as api:
        ApiKeys([KEY, blank])
    assert str(api.value) == "an API key is blank"
    with pytest.raises(ValueError) as admin:
        AdminKeys([("ops", ADMIN), ("empty", blank)])
    assert str(admin.value) == "an admin key is blank"


def test_admin_keys_answer_the_name_of_the_key() -> None:
    admins = AdminKeys([("ops", ADMIN), ("backup", BACKUP), ("again", ADMIN)])
    assert admins.enabled and not AdminKeys([]).enabled
    assert admins.match(ADMIN) == "ops"  # a key listed twice: its first name
    assert admins.match(BACKUP) == "backup"
    for near in (None, "", "  ", ADMIN[:-1], ADMIN + "x", KEY):
        assert admins.match(near) is None, near
    assert AdminKeys([]).match(ADMIN) is None


def test_the_user_allowlist_refuses_with_a_403_naming_the_user() -> None:
    users = UserAllowlist(["alice"], granted=["carol"])
    assert users.restricted and not UserAllowlist([]).restricted
    assert users.in_config("alice") and not users.in_config("carol") and not users.in_config("alic")
    users.check("alice")
    users.check("carol")
    with pytest.raises(ApiError) as info:
        users.check("bob")
    err = info.value
    assert (err.status_code, err.code) == (403, "user_not_allowed")
    assert err.message == "user 'bob' is not on this API's allowed_users list"
    UserAllowlist([]).check("anyone")  # an empty list admits any


# -- the route dependencies ---------------------------------------------------------------------
@dataclass
class Context:
    keys: ApiKeys
    admins: AdminKeys
    refreshed: list[bool] = field(default_factory=list)

    async def refresh_granted_users(self) -> None:
        self.refreshed.append(True)


def make_app(ctx: Context) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.ctx = ctx

    @app.get("/api/v1/thing", dependencies=[Depends(require_api_key)])
    async def thing() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/api/v1/admin")
    async def admin(who: str = Depends(require_admin)) -> dict[str, Any]:
        return {"who": who}

    return app


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Context]]:
    ctx = Context(ApiKeys([KEY]), AdminKeys([("ops", ADMIN)]))
    transport = httpx.ASGITransport(app=make_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http, ctx


def error(resp: httpx.Response) -> tuple[int, str, str]:
    body = resp.json()["error"]
    return resp.status_code, body["code"], body["message"]


async def test_routes_take_the_key_as_a_bearer_token_or_an_x_api_key(client: Any) -> None:
    http, ctx = client
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        resp = await http.get("/api/v1/thing", headers=headers)
        assert resp.status_code == 200 and resp.json() == {"ok": True}, headers
    assert len(ctx.refreshed) == 2  # the granted users are brought up to date for every call


async def test_a_missing_or_wrong_key_is_a_401_that_says_which_and_how(client: Any) -> None:
    http, ctx = client
    how = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    missing = await http.get("/api/v1/thing")
    assert error(missing) == (401, "unauthorized", f"missing API key: {how}")
    assert missing.headers["www-authenticate"] == "Bearer"
    for headers in ({"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": f"Bearer {ADMIN}"}):
        resp = await http.get("/api/v1/thing", headers=headers)
        assert error(resp) == (401, "unauthorized", f"invalid API key: {how}"), headers
        assert resp.headers["www-authenticate"] == "Bearer"
    assert ctx.refreshed == []  # nothing is read for a caller without a key


async def test_without_api_keys_the_routes_are_open(client: Any) -> None:
    http, ctx = client
    ctx.keys = ApiKeys([])
    assert (await http.get("/api/v1/thing")).status_code == 200
    assert ctx.refreshed == [True]


async def test_admin_routes_answer_who_is_calling(client: Any) -> None:
    http, _ = client
    for headers in ({"Authorization": f"Bearer {ADMIN}"}, {"X-API-Key": ADMIN}):
        resp = await http.get("/api/v1/admin", headers=headers)
        assert resp.status_code == 200 and resp.json() == {"who": "admin_key:ops"}, headers


async def test_admin_routes_refuse_api_keys_with_403_and_others_with_401(client: Any) -> None:
    http, ctx = client
    how = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    refused = await http.get("/api/v1/admin", headers={"X-API-Key": KEY})
    assert error(refused) == (403, "admin_key_required", "this API key may not use /admin: send an admin key")
    assert error(await http.get("/api/v1/admin")) == (401, "unauthorized", f"missing admin key: {how}")
    wrong = await http.get("/api/v1/admin", headers={"X-API-Key": "wrong"})
    assert error(wrong) == (401, "unauthorized", f"invalid admin key: {how}")
    assert wrong.headers["www-authenticate"] == "Bearer"
    ctx.admins = AdminKeys([])
    off = await http.get("/api/v1/admin", headers={"X-API-Key": KEY})
    assert error(off) == (
        403,
        "admin_key_required",
        "this API key may not use /admin: send an admin key (admin_keys is empty: the admin endpoints are off)",
    )
