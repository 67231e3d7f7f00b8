"""Access granted in the chat (``core.grants``): kept in the store, shared by instances, logged with who."""

from __future__ import annotations

import logging
import time

import pytest

from core.grants import PREFIX, REFRESH_AFTER, AccessGrants
from core.store.memory import MemoryStore

ADMIN = "telegram:7"


async def test_a_grant_is_kept_in_the_store_with_who_made_it_and_when() -> None:
    store = MemoryStore()
    grants = AccessGrants(store, "tg")
    before = time.time()
    assert await grants.grant("telegram:42", ADMIN) is True
    assert grants.entries == frozenset({"telegram:42"})
    other = AccessGrants(store, "tg")  # another instance (or this one after a restart)
    seen = await other.refresh()
    assert set(seen) == {"telegram:42"} and other.entries == frozenset({"telegram:42"})
    grant = seen["telegram:42"]
    assert grant.entry == "telegram:42" and grant.by == ADMIN
    assert before <= grant.at <= time.time()


async def test_granting_twice_is_reported_and_keeps_the_first_grant() -> None:
    store = MemoryStore()
    grants = AccessGrants(store, "tg")
    assert await grants.grant("telegram:42", ADMIN) is True
    first = (await grants.refresh(force=True))["telegram:42"]
    assert await grants.grant("telegram:42", "telegram:8") is False
    again = await AccessGrants(store, "tg").refresh()
    assert again["telegram:42"] == first  # still granted by the first admin


async def test_a_grant_made_on_another_instance_is_not_granted_again() -> None:
    store = MemoryStore()
    here, there = AccessGrants(store, "tg"), AccessGrants(store, "tg")
    await here.refresh()  # a fresh copy: nothing granted yet
    assert await there.grant("telegram:42", ADMIN) is True
    assert await here.grant("telegram:42", "telegram:8") is False  # it reads the store first
    assert (await here.refresh())["telegram:42"].by == ADMIN


async def test_a_revoke_removes_the_grant_everywhere() -> None:
    store = MemoryStore()
    here, there = AccessGrants(store, "tg"), AccessGrants(store, "tg")
    await here.grant("telegram:42", ADMIN)
    await here.grant("telegram:43", ADMIN)
    assert await there.revoke("telegram:42", ADMIN) is True
    assert await there.revoke("telegram:42", ADMIN) is False  # nothing left to revoke
    assert there.entries == frozenset()  # its copy was never read: the revoke leaves nothing behind
    assert set(await here.refresh(force=True)) == {"telegram:43"}
    assert here.entries == frozenset({"telegram:43"})
    assert await here.revoke("telegram:43", ADMIN) is True
    assert here.entries == frozenset() and await AccessGrants(store, "tg").refresh() == {}


async def test_revoking_an_entry_never_granted_is_false_and_changes_nothing() -> None:
    store = MemoryStore()
    grants = AccessGrants(store, "tg")
    await grants.grant("telegram:42", ADMIN)
    assert await grants.revoke("telegram:4", ADMIN) is False
    assert grants.entries == frozenset({"telegram:42"})


async def test_grants_of_one_bot_are_not_grants_of_another() -> None:
    store = MemoryStore()
    await AccessGrants(store, "tg").grant("telegram:42", ADMIN)
    assert await AccessGrants(store, "tg2").refresh() == {}
    assert await AccessGrants(store, "t").refresh() == {}  # a bot name that is a prefix of another
    assert await AccessGrants(store, "tg2").revoke("telegram:42", ADMIN) is False
    assert set(await AccessGrants(store, "tg").refresh()) == {"telegram:42"}


async def test_a_copy_is_trusted_for_a_few_seconds_then_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    here, there = AccessGrants(store, "tg"), AccessGrants(store, "tg")
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    await here.refresh()
    await there.grant("telegram:42", ADMIN)
    assert await here.refresh() == {}  # the copy just read is still trusted
    now[0] += 4.0
    assert await here.refresh() == {}
    now[0] += 1.5  # more than five seconds after the read
    assert set(await here.refresh()) == {"telegram:42"}
    await there.revoke("telegram:42", ADMIN)
    assert set(await here.refresh()) == {"telegram:42"}
    assert await here.refresh(force=True) == {}  # forced: read now


async def test_an_unreadable_grant_still_admits_its_entry() -> None:
    """A value another version wrote (or a hand edit): the entry stays granted, by an unknown admin."""
    store = MemoryStore()
    await store.put_meta(f"{PREFIX}tg:telegram:42", "not json")
    await store.put_meta(f"{PREFIX}tg:telegram:43", "[1, 2]")
    await store.put_meta(f"{PREFIX}tg:telegram:44", '{"by": "telegram:9", "at": 12.5}')
    await store.put_meta(f"{PREFIX}tg:telegram:45", "{}")
    grants = await AccessGrants(store, "tg").refresh()
    assert set(grants) == {"telegram:42", "telegram:43", "telegram:44", "telegram:45"}
    assert [(g.entry, g.by, g.at) for g in (grants["telegram:42"], grants["telegram:43"])] == [
        ("telegram:42", "?", 0.0),
        ("telegram:43", "?", 0.0),
    ]
    assert (grants["telegram:44"].by, grants["telegram:44"].at) == ("telegram:9", 12.5)
    assert (grants["telegram:45"].by, grants["telegram:45"].at) == ("?", 0.0)


async def test_every_change_is_logged_with_who_made_it(caplog: pytest.LogCaptureFixture) -> None:
    grants = AccessGrants(MemoryStore(), "tg")
    with caplog.at_level(logging.INFO, logger="core.grants"):
        await grants.grant("telegram:42", ADMIN)
        await grants.grant("telegram:42", ADMIN)  # no change: not logged again
        await grants.revoke("telegram:42", "telegram:8")
        await grants.revoke("telegram:42", "telegram:8")
    lines = [r.getMessage() for r in caplog.records if r.name == "core.grants"]
    assert len(lines) == 2
    assert "granted" in lines[0] and "telegram:42" in lines[0] and ADMIN in lines[0] and "tg" in lines[0]
    assert "revoked" in lines[1] and "telegram:42" in lines[1] and "telegram:8" in lines[1]


async def test_the_granting_instance_knows_who_granted_without_reading_the_store_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    grants = AccessGrants(store, "tg")
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    await grants.grant("telegram:42", ADMIN)
    await store.delete_meta(f"{PREFIX}tg:telegram:42")  # not read again within the trusted seconds
    copy = (await grants.refresh())["telegram:42"]
    assert (copy.entry, copy.by) == ("telegram:42", ADMIN)


async def test_a_copy_exactly_as_old_as_the_trusted_seconds_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    here, there = AccessGrants(store, "tg"), AccessGrants(store, "tg")
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    await here.refresh()
    await there.grant("telegram:42", ADMIN)
    now[0] += REFRESH_AFTER
    assert await here.refresh() == {}
    now[0] += 0.001
    assert set(await here.refresh()) == {"telegram:42"}


async def test_the_log_lines_name_the_bot_the_entry_and_the_admin(caplog: pytest.LogCaptureFixture) -> None:
    grants = AccessGrants(MemoryStore(), "tg")
    with caplog.at_level(logging.INFO, logger="core.grants"):
        await grants.grant("telegram:42", ADMIN)
        await grants.revoke("telegram:42", "telegram:8")
    assert [r.getMessage() for r in caplog.records if r.name == "core.grants"] == [
        "access to bot tg granted to telegram:42 by telegram:7",
        "access to bot tg revoked from telegram:42 by telegram:8",
    ]
