"""``/admin``: who may use the bots, and re-reading the config file. Admin keys only.

The HTTP side of the chat's ``/allow``, ``/revoke`` and ``/users``. Grants are the chat's own
(:class:`core.grants.AccessGrants`): kept in the store under a bot's name, so a grant made here
reaches the bot of that name on every instance sharing the store, and survives restarts. ``bot``
names whose access is managed (default: this API):

* this API: its ``allowed_users`` plus the users granted here (entries ``api:<user_id>``);
* one of ``admin_bots``, a chat bot sharing the store: entries ``<platform>:<user id>`` or
  ``<platform>:role:<role id>``, added to its ``access.allowlist`` as a ``/allow`` in the chat would.

``POST /admin/reload`` re-reads the config file as SIGHUP does. Every change is logged with the
name of the admin key that made it. The router is served only when ``admin_keys`` is set.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from core import CCBridgeError
from core.access import ROLE, AccessPolicy
from core.grants import AccessGrants

from .auth import require_admin
from .common import Ctx
from .context import PLATFORM, ApiContext, granted_users
from .errors import ApiError
from .models import USER_ID_MAX, ErrorEnvelope, utc

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

Admin = Annotated[str, Depends(require_admin)]  # who calls: "admin_key:<name>"
BotQuery = Annotated[
    str | None, Query(min_length=1, max_length=128, description="Whose access (default: this API itself).")
]
ENTRY_MAX = 256
T = TypeVar("T")

_DESCRIPTIONS = {
    401: "Missing or invalid admin key",
    403: "An API key that is not an admin key",
    404: "No such bot here, or no such grant",
    409: "The config file admits this entry (revoke), or the config file is invalid (reload)",
    413: "Request body too large",
    422: "Invalid request (the fields are listed)",
    501: "Not available here (a store without named values; an API not run by ccbridge)",
    503: "The store is unavailable",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[s]} for s in sorted({401, 403, *statuses})}


# -- bodies -------------------------------------------------------------------------
class AccessEntry(BaseModel):
    entry: str = Field(description="'platform:user_id' or 'platform:role:<role id>'; this API's users are 'api:<id>'.")
    source: Literal["config", "granted"] = Field(description="The config file, or a grant (chat or /admin/users).")
    setting: str | None = Field(None, description="The config key admitting it (source 'config').")
    granted_by: str | None = Field(None, description="'admin_key:<name>' over HTTP, 'telegram:7' from a chat.")
    granted_at: datetime | None = None


class AccessList(BaseModel):
    bot: str
    everyone: bool = Field(
        description="Anyone may use it: this API with an empty allowed_users, a chat bot with access.allow_all."
    )
    users: list[AccessEntry] = Field(description="The config file's entries first, then the grants, oldest first.")
    admins: list[str] = Field(description="access.admins (config file): admitted everywhere, may answer any approval.")


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(
        min_length=1,
        max_length=ENTRY_MAX,
        description="For this API a user_id (a leading 'api:' is the platform); for a chat bot "
        "'platform:user_id' or 'platform:role:<role id>'.",
        examples=["alice", "telegram:42", "discord:role:123"],
    )
    bot: str | None = Field(None, min_length=1, max_length=128, description="Whose access (default: this API).")


class GrantResult(BaseModel):
    bot: str
    entry: str
    granted: bool = Field(description="False: it was granted already (nothing changed).")
    in_config: bool = Field(description="The config file admits it too.")
    granted_by: str
    granted_at: datetime


class RevokeResult(BaseModel):
    bot: str
    entry: str
    revoked: Literal[True] = True
    still_allowed: bool = Field(description="The config file still admits it (remove it there, then reload).")


class ReloadResult(BaseModel):
    reloaded: Literal[True] = True
    needs_restart: dict[str, list[str]] = Field(
        description="By bot: settings changed in the file that only a restart applies (the running value stays)."
    )


# -- whose access ---------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """One bot's access as these routes manage it: its grants, and whether it is this API."""

    bot: str
    own: bool
    grants: AccessGrants


def scope_of(ctx: ApiContext, bot: str | None) -> Scope:
    own = ctx.agent.name
    name = bot or own
    if name == own:
        return Scope(name, True, ctx.grants)
    if name in ctx.settings.admin_bots:
        return Scope(name, False, AccessGrants(ctx.agent.store, name))
    others = ", ".join(repr(b) for b in ctx.settings.admin_bots) or "none"
    raise ApiError(404, "bot_not_found", f"no bot {name!r} here: this API is {own!r}; admin_bots: {others}")


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"invalid request: {field}: {message}",
        fields=[{"field": field, "message": message, "type": "value_error"}],
    )


def entry_of(scope: Scope, user: str, field: str = "user") -> str:
    """The grant entry ``user`` names for ``scope`` (422 when it names none)."""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in user) or not user.strip():
        raise _invalid("must be non-blank text without control characters", field)
    if scope.own:
        user_id = user.removeprefix(f"{PLATFORM}:")
        if not user_id.strip() or len(user_id) > USER_ID_MAX or user_id == "*":
            raise _invalid(f"give one user_id (1 to {USER_ID_MAX} characters; no wildcard)", field)
        return f"{PLATFORM}:{user_id}"
    platform, sep, who = user.partition(":")
    if not sep or not platform or not who:
        raise _invalid(f"give the platform: 'telegram:42' (a chat bot's entry), not {user!r}", field)
    role = who.removeprefix(ROLE)
    if who == "*" or any(c.isspace() for c in user) or ":" in role or not role:
        raise _invalid("give one 'platform:user_id' or 'platform:role:<role id>' (wildcards are for the config)", field)
    return user


def config_entries(ctx: ApiContext, scope: Scope) -> list[AccessEntry]:
    if scope.own:
        setting = f"bots.{scope.bot}.allowed_users"
        return [
            AccessEntry(entry=f"{PLATFORM}:{u}", source="config", setting=setting) for u in ctx.settings.allowed_users
        ]
    allowlist = ctx.access_of(scope.bot).allowlist
    return [AccessEntry(entry=e, source="config", setting="access.allowlist") for e in allowlist]


def in_config(ctx: ApiContext, scope: Scope, entry: str) -> bool:
    if scope.own:
        return ctx.users.in_config(entry.removeprefix(f"{PLATFORM}:"))
    return AccessPolicy(ctx.access_of(scope.bot)).in_config(entry)


def _sync_own(ctx: ApiContext, scope: Scope) -> None:
    """This instance's check sees its own change at once (the others within seconds)."""
    if scope.own:
        ctx.users.granted = granted_users(scope.grants.entries)


async def _store(call: Awaitable[T]) -> T:
    try:
        return await call
    except NotImplementedError:
        raise ApiError(
            501, "not_supported", "this store keeps no named values: access is managed in the config file only"
        ) from None


# -- routes ---------------------------------------------------------------------------
@router.get("/users", responses=errors(404, 501, 503))
async def list_users(ctx: Ctx, bot: BotQuery = None) -> AccessList:
    """Who may use a bot, and from where: the config file or a grant (``/allow`` in a chat, or here)."""
    scope = scope_of(ctx, bot)
    grants = await _store(scope.grants.refresh(force=True))
    granted = [
        AccessEntry(entry=g.entry, source="granted", granted_by=g.by, granted_at=utc(g.at) if g.at else None)
        for g in sorted(grants.values(), key=lambda g: g.at)
    ]
    access = ctx.access_of(scope.bot)
    admins = [a for a in access.admins if not scope.own or a.startswith(f"{PLATFORM}:")]
    everyone = not ctx.settings.allowed_users if scope.own else access.allow_all
    return AccessList(bot=scope.bot, everyone=everyone, users=config_entries(ctx, scope) + granted, admins=admins)


@router.post(
    "/users",
    status_code=201,
    responses={200: {"model": GrantResult, "description": "Granted already"}, **errors(404, 422, 501, 503)},
)
async def grant_user(body: GrantRequest, ctx: Ctx, caller: Admin, response: Response) -> GrantResult:
    """Let a user (or a Discord role) use a bot: the chat's ``/allow``. 200 when it was granted already."""
    scope = scope_of(ctx, body.bot)
    entry = entry_of(scope, body.user)
    new = await _store(scope.grants.grant(entry, caller))
    grant = (await scope.grants.refresh())[entry]
    _sync_own(ctx, scope)
    if not new:
        response.status_code = 200
    return GrantResult(
        bot=scope.bot,
        entry=entry,
        granted=new,
        in_config=in_config(ctx, scope, entry),
        granted_by=grant.by,
        granted_at=utc(grant.at),
    )


@router.delete("/users/{entry:path}", responses=errors(404, 409, 422, 501, 503))
async def revoke_user(entry: str, ctx: Ctx, caller: Admin, bot: BotQuery = None) -> RevokeResult:
    """Take a grant back: the chat's ``/revoke``. An entry of the config file can only be removed there
    (409), then ``POST /admin/reload``."""
    if len(entry) > ENTRY_MAX:
        raise _invalid(f"at most {ENTRY_MAX} characters", "entry")
    scope = scope_of(ctx, bot)
    entry = entry_of(scope, entry, "entry")
    removed = await _store(scope.grants.revoke(entry, caller))
    _sync_own(ctx, scope)
    configured = in_config(ctx, scope, entry)
    if not removed and configured:
        raise ApiError(
            409, "in_config", f"{entry!r} is admitted by the config file: remove it there, then POST /admin/reload"
        )
    if not removed:
        raise ApiError(404, "grant_not_found", f"{entry!r} has no access granted for bot {scope.bot!r}")
    return RevokeResult(bot=scope.bot, entry=entry, still_allowed=configured)


@router.post("/reload", responses=errors(409, 501))
async def reload_config(ctx: Ctx, caller: Admin) -> ReloadResult:
    """Re-read the config file, as SIGHUP does: access, reply and agent settings for new turns, and this
    API's keys, users and turn timeout. An invalid file changes nothing (409, naming the key)."""
    if ctx.reload is None:
        raise ApiError(501, "not_supported", "this API was not started by ccbridge: there is no config file to re-read")
    log.info("configuration reload requested by %s", caller)
    try:
        pending = await ctx.reload()
    except CCBridgeError as exc:
        problems = str(exc).splitlines() or [type(exc).__name__]
        raise ApiError(
            409,
            "config_invalid",
            f"the config file is invalid; the running configuration is kept: {'; '.join(problems)}",
            key=getattr(exc, "key", None),
            problems=problems,
        ) from None
    return ReloadResult(needs_restart={bot: list(keys) for bot, keys in pending.items()})
