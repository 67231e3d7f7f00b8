"""The access policy at its boundaries: every rule, and the near misses that must not pass."""

from __future__ import annotations

import pytest

from core.access import AccessPolicy
from core.config import AccessSettings


def policy(**settings: object) -> AccessPolicy:
    return AccessPolicy(AccessSettings(**settings))  # type: ignore[arg-type]


def test_an_entry_admits_exactly_its_user_on_its_platform() -> None:
    p = policy(allowlist=["slack:U1", "telegram:42"])
    assert p.allows("slack", "U1") and p.allows("telegram", "42")
    assert not p.allows("telegram", "U1")  # same id, another platform
    assert not p.allows("slack", "42")
    for near_miss in ("U", "U11", "u1", " U1", "U1 ", "U1:x", ""):
        assert not p.allows("slack", near_miss), near_miss
    assert not p.allows("slac", "U1") and not p.allows("slack:U1", "")


def test_a_platform_wildcard_admits_everyone_there_and_nobody_elsewhere() -> None:
    p = policy(allowlist=["slack:*"])
    assert p.allows("slack", "U1") and p.allows("slack", "anyone")
    assert not p.allows("telegram", "42")
    assert not policy(allowlist=["slack:U*"]).allows("slack", "U1")  # no other patterns


def test_admins_are_admitted_without_being_on_the_allowlist() -> None:
    p = policy(allowlist=["slack:U1"], admins=["slack:UBOSS"])
    assert p.allows("slack", "UBOSS") and p.is_admin("slack", "UBOSS")
    assert not p.is_admin("slack", "U1")
    assert not p.is_admin("telegram", "UBOSS")  # an admin on one platform only
    assert not p.allows("telegram", "UBOSS")


def test_roles_admit_their_members_only_on_their_platform() -> None:
    p = policy(allowlist=["discord:role:7"], admins=["discord:role:9"])
    assert p.allows("discord", "123", roles=["7"])
    assert not p.allows("discord", "123", roles=["70", "17"])
    assert not p.allows("discord", "123")
    assert not p.allows("discord", "7")  # a role id is not a user id
    assert not p.allows("slack", "123", roles=["7"])
    assert p.is_admin("discord", "5", roles=["9"]) and not p.is_admin("discord", "5", roles=["7"])
    assert not policy(allowlist=["discord:7"]).allows("discord", "123", roles=["7"])  # a user id is not a role


def test_an_empty_allowlist_admits_nobody_unless_allow_all() -> None:
    assert not policy().allows("slack", "U1")
    open_bot = policy(allow_all=True)
    assert open_bot.allows("slack", "U1") and open_bot.allows("telegram", "anyone")
    assert not open_bot.is_admin("slack", "U1")  # open is not admin
    assert open_bot.startup_warnings("slack") and "allow_all" in open_bot.startup_warnings("slack")[0]
    assert "nobody may use" in policy().startup_warnings("slack")[0]
    assert policy(allowlist=["slack:U1"]).startup_warnings("slack") == []
    assert "nobody may use" in policy(allowlist=["slack:U1"]).startup_warnings("telegram")[0]


def test_chat_grants_add_to_the_config_and_revokes_take_them_away() -> None:
    p = policy(allowlist=["slack:U1"])
    p.granted = frozenset({"slack:U2", "discord:role:7"})
    assert p.allows("slack", "U2") and p.allows("discord", "1", roles=["7"])
    assert not p.allows("telegram", "U2")
    assert p.in_config("slack:U1") and not p.in_config("slack:U2")
    p.granted = frozenset()
    assert not p.allows("slack", "U2") and p.allows("slack", "U1")  # the config stays the base
    p.update(AccessSettings(allowlist=["slack:U3"]))
    assert p.allows("slack", "U3") and not p.allows("slack", "U1")  # a reload replaces the config part


@pytest.mark.parametrize("entry", ["slack", "slack:", ":U1", "discord:role:"])
def test_malformed_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ValueError):
        AccessSettings(allowlist=[entry])


def test_an_admin_by_role_is_admitted_without_being_on_the_allowlist() -> None:
    p = policy(allowlist=["discord:1"], admins=["discord:role:9"])
    assert p.allows("discord", "5", roles=["9"]) and p.is_admin("discord", "5", roles=["9"])
    assert not p.allows("discord", "5", roles=["8"])


def test_the_startup_warnings_say_what_to_change() -> None:
    (open_bot,) = policy(allow_all=True).startup_warnings("slack")
    assert open_bot == (
        "access.allow_all is set: every slack user who can reach this bot may use it "
        "(tools outside the workspace still need approval)."
    )
    (closed,) = policy(admins=["telegram:1"]).startup_warnings("slack")
    assert closed == (
        "nobody may use this slack bot: access.allowlist has no 'slack:<user id>' entries "
        "and access.allow_all is false. Add users to access.allowlist (or access.admins)."
    )
    assert policy(admins=["slack:UBOSS"]).startup_warnings("slack") == []  # an admin can use it
