"""``POST /admin/reload`` re-reads the config file as SIGHUP does: allowed_users and keys change without a
restart, what cannot change is named, and an invalid file keeps the running configuration."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import run_bot
from bots.http_api import HttpApiBot
from tests.helpers import bot_process, eventually

from .conftest import ADMIN_KEY, KEY, OTHER_KEY, serve

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(cli_env: dict[str, str], port: int, **api: Any) -> dict[str, Any]:
    return {
        "agent": {"env": cli_env},
        "workspace": {"base_dir": "ws"},
        "log_level": "INFO",
        "bots": {
            "api": {
                "kind": "http_api",
                "port": port,
                "api_keys": [KEY],
                "admin_keys": [{"name": "ops", "key": ADMIN_KEY}],
                "allowed_users": ["alice"],
                "admin_bots": ["team_tg"],
                **api,
            },
            # not run here; its access (with its own override) is what /admin/users?bot=team_tg shows
            "team_tg": {"kind": "telegram", "enabled": False, "token": "1:x", "access": {"allowlist": ["telegram:5"]}},
        },
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data))


async def status_of(client: httpx.AsyncClient, user_id: str, key: str = KEY) -> int:
    resp = await client.get("/api/v1/sessions", params={"user_id": user_id}, headers={"X-API-Key": key})
    return resp.status_code


async def test_post_admin_reload_changes_allowed_users_and_an_invalid_file_keeps_the_running_config(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    port = free_port()
    path = tmp_path / "config.yaml"
    write(path, config(cli_env, port))
    async with bot_process(path, tmp_path) as bot:
        await bot.logged("starting api")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await eventually(lambda: _up(client), what="the API to answer")
            assert await status_of(client, "bob") == 403
            team = (await client.get("/admin/users", params={"bot": "team_tg"}, headers=ADMIN)).json()
            assert [u["entry"] for u in team["users"]] == ["telegram:5"]  # the bot's own access override

            write(path, config(cli_env, port, allowed_users=["alice", "bob"]))
            reloaded = await client.post("/admin/reload", headers=ADMIN)
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json() == {"reloaded": True, "needs_restart": {"api": []}}
            assert await status_of(client, "bob") == 200  # without a restart
            assert any("configuration reload requested by admin_key:ops" in line for line in bot.log)

            broken = config(cli_env, port, allowed_users=["alice"])
            broken["access"] = {"allowlist": ["not-an-entry"]}
            write(path, broken)
            failed = await client.post("/admin/reload", headers=ADMIN)
            assert failed.status_code == 409
            error = failed.json()["error"]
            assert error["code"] == "config_invalid" and "access.allowlist" in error["message"]
            assert "running configuration is kept" in error["message"] and error["problems"]
            assert await status_of(client, "bob") == 200  # the running config stays
            failures = [line for line in bot.log if "reload failed" in line]
            assert len(failures) == 1 and "access.allowlist" in failures[0]  # one line, naming the key
            assert not [line for line in bot.log if ADMIN_KEY in line]

            path.write_bytes(path.read_bytes().replace(b"alice", "alicé".encode("latin-1")))  # not UTF-8
            failed = await client.post("/admin/reload", headers=ADMIN)
            assert failed.status_code == 409 and "not UTF-8 text" in failed.json()["error"]["message"]
            assert await status_of(client, "bob") == 200
            assert not [line for line in bot.log if "Traceback" in line]


async def _up(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


# -- in process: run_bot's reloader, the bot's own app ---------------------------------------
@asynccontextmanager
async def running_bot(path: Path) -> AsyncIterator[tuple[HttpApiBot, httpx.AsyncClient]]:
    """The ``api`` bot of ``path`` as run_bot plans it, with run_bot's reloader, served on a free port."""
    args = run_bot.parse_args(["--config", str(path)])
    plans = run_bot.plan(run_bot.load(args), ["api"])
    bot = plans[0].bot
    assert isinstance(bot, HttpApiBot)
    bot.reloader = run_bot.ConfigReloader(args, plans).reload
    await bot.agent.start()
    try:
        async with serve(bot.server().config.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield bot, client
    finally:
        await bot.agent.close()


async def test_a_reload_rotates_keys_at_once_and_names_what_needs_a_restart(
    tmp_path: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.yaml"
    write(path, config(cli_env, 8080))
    async with running_bot(path) as (bot, client):
        assert await status_of(client, "alice") == 200 and await status_of(client, "alice", OTHER_KEY) == 401
        write(path, config(cli_env, 9090, api_keys=[OTHER_KEY], turn_timeout=30, cors_origins=["https://a.example"]))
        resp = await client.post("/admin/reload", headers=ADMIN)
        assert resp.status_code == 200, resp.text
        assert resp.json()["needs_restart"] == {"api": ["bots.api.port", "bots.api.cors_origins"]}
        assert await status_of(client, "alice", OTHER_KEY) == 200 and await status_of(client, "alice") == 401
        assert (bot.settings.port, bot.settings.cors_origins, bot.settings.turn_timeout) == (8080, [], 30)

        write(path, config(cli_env, 8080, api_keys=[OTHER_KEY], max_body_bytes=0))  # a bad setting of the bot's own
        failed = await client.post("/admin/reload", headers=ADMIN)
        assert failed.status_code == 409 and "bots.api.max_body_bytes" in failed.json()["error"]["message"]
        assert await status_of(client, "alice", OTHER_KEY) == 200 and bot.settings.max_body_bytes == 1024 * 1024

        rotated = {"name": "ops2", "key": "rotated-admin-key-0123456"}
        write(path, config(cli_env, 8080, api_keys=[OTHER_KEY], admin_keys=[rotated]))
        assert (await client.post("/admin/reload", headers=ADMIN)).status_code == 200
        assert (await client.get("/admin/users", headers=ADMIN)).status_code == 401  # the old admin key is gone
        listing = await client.get("/admin/users", headers={"X-API-Key": rotated["key"]})
        assert listing.status_code == 200


async def test_reload_without_run_bot_is_501(make_api: Any) -> None:
    async with make_api(admin_keys=[ADMIN_KEY]) as api:
        resp = await api.client.post("/admin/reload", headers=ADMIN)
        assert resp.status_code == 501 and resp.json()["error"]["code"] == "not_supported"
