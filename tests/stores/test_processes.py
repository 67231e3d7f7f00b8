"""Several real ``run_bot.py`` processes on one store: the console bot piped, as users run it.

Each process is a machine of its own: its own HOME, Claude Code config directory and
sessions directory; they share the store and the workspace path. The second one
answers with the memory of the first's conversation (the fake model's request log shows
the earlier turns among the messages it received).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.store.settings import PostgresStoreSettings
from core.transcripts import transcripts_for
from core.transcripts.migrate import local_transcripts
from core.transcripts.mirror import read_jsonl
from tests.core.test_run_bot import run_bot
from tests.fakes.anthropic_api import FakeAnthropicAPI

pytestmark = pytest.mark.agent


def machine_config(tmp_path: Path, name: str, fake_api: FakeAnthropicAPI, store: dict[str, Any]) -> Path:
    """A config file for machine ``name``: shared workspaces and store, everything else its own."""
    root = tmp_path / name
    home = root / "home"
    (home / ".claude").mkdir(parents=True)
    config = {
        "agent": {
            "env": {**fake_api.env(), "HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude")},
            "sessions_dir": str(root / "sessions"),
        },
        "workspace": {"base_dir": str(tmp_path / "shared-workspaces")},
        "store": store,
        "bots": {"desk": {"kind": "console", "user": "alice"}},
        "log_level": "WARNING",
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def talk(config: Path, *lines: str) -> list[str]:
    code, out, err = await run_bot(
        "--config", str(config), stdin="".join(f"{line}\n" for line in lines), cwd=config.parent
    )
    assert code == 0, err
    return out.splitlines()


@pytest.fixture(params=["redis", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "redis":
        return {
            "backend": "redis",
            "url": request.getfixturevalue("redis_server").url,
            "key_prefix": f"{tmp_path.name}:",
        }
    return {"backend": "postgres", "dsn": request.getfixturevalue("postgres_dsn")}


async def test_a_second_process_with_another_home_continues_the_conversation(
    tmp_path: Path, fake_api: FakeAnthropicAPI, shared_store: dict[str, Any]
) -> None:
    first = machine_config(tmp_path, "one", fake_api, shared_store)
    second = machine_config(tmp_path, "two", fake_api, shared_store)
    assert await talk(first, "my name is Ada", "I like otters") == ["echo: my name is Ada", "echo: I like otters"]
    lines = await talk(second, "what do I like?", "/status")
    assert lines[0] == "echo: what do I like?" and "3 message(s)" in "\n".join(lines)
    assert fake_api.requests[-1].user_texts()[-3:] == ["my name is Ada", "I like otters", "what do I like?"]
    assert list((tmp_path / "two" / "sessions").glob("**/projects/*/*.jsonl"))  # resumed from its own private dir
    assert not list((tmp_path / "two" / "home" / ".claude").glob("projects/*/*.jsonl"))


async def test_migration_copies_a_sqlite_store_to_postgres_and_conversations_continue(
    tmp_path: Path, fake_api: FakeAnthropicAPI, postgres_dsn: str
) -> None:
    old = machine_config(tmp_path, "old", fake_api, {"backend": "sqlite", "path": str(tmp_path / "old" / "cc.db")})
    assert await talk(old, "remember: the key is under the mat") == ["echo: remember: the key is under the mat"]
    new = machine_config(tmp_path, "new", fake_api, {"backend": "postgres", "dsn": postgres_dsn})

    code, out, err = await run_bot("--migrate-store", str(old), str(new), cwd=tmp_path)
    assert code == 0, err
    assert "copied 1 conversation(s), 1 turn(s)" in out and "1 from local disk" in out
    code, again, _ = await run_bot("--migrate-store", str(old), str(new), cwd=tmp_path)  # idempotent
    assert code == 0 and "copied 1 conversation(s)" in again
    [(key, path)] = local_transcripts(tmp_path / "old" / "sessions")
    target = transcripts_for(PostgresStoreSettings(dsn=postgres_dsn))
    await target.open()
    try:  # copied twice, held once: lines without a uuid (last-prompt, cost-state...) too
        assert await target.load(key) == read_jsonl(path)
    finally:
        await target.close()

    # another machine on the PostgreSQL store (its own HOME and sessions): the conversation goes on
    lines = await talk(new, "where is the key?", "/status")
    assert lines[0] == "echo: where is the key?"
    assert "2 message(s)" in "\n".join(lines)
    assert fake_api.requests[-1].user_texts()[-2:] == ["remember: the key is under the mat", "where is the key?"]
