"""API keys (``Authorization: Bearer`` or ``X-API-Key``), admin keys, and the user allowlist."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError

bearer_scheme = HTTPBearer(auto_error=False, description="An API key as a Bearer token.")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class ApiKeys:
    """Checks presented keys against every configured key in constant time.

    A blank key is refused here too (the settings already drop them): it must
    never turn into a key that an empty header matches.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if any(not k.strip() for k in keys):
            raise ValueError("an API key is blank")
        self._digests = [_digest(k) for k in keys]

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str | None) -> bool:
        if not presented or not presented.strip():
            return False
        candidate = _digest(presented)
        matched = False
        for digest in self._digests:  # no early exit: every key costs the same
            matched |= hmac.compare_digest(candidate, digest)
        return matched


class AdminKeys:
    """The keys of ``/admin/*``, by name; checked like :class:`ApiKeys` (every key, in constant time).

    :meth:`match` answers the key's name, which is what logs and grants record (never the key).
    """

    def __init__(self, keys: Iterable[tuple[str, str]]) -> None:
        keys = list(keys)
        if any(not key.strip() for _, key in keys):
            raise ValueError("an admin key is blank")
        self._keys = [(name, _digest(key)) for name, key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def match(self, presented: str | None) -> str | None:
        """The name of the admin key presented; None when it is none of them."""
        if not presented or not presented.strip():
            return None
        candidate = _digest(presented)
        found: str | None = None
        for name, digest in self._keys:  # no early exit: every key costs the same
            if hmac.compare_digest(candidate, digest) and found is None:
                found = name
        return found


class UserAllowlist:
    """Which ``user_id`` values callers may act as: ``allowed_users`` plus the users granted through
    ``/admin/users`` (``granted``); an empty ``allowed_users`` admits any.

    Whole ids only, as given: ``alice`` admits neither ``alic``, ``alice2``, ``alice/x`` nor ``Alice``.
    """

    def __init__(self, users: Iterable[str], granted: Iterable[str] = ()) -> None:
        self._users = frozenset(users)
        self.granted: frozenset[str] = frozenset(granted)

    @property
    def restricted(self) -> bool:
        """Not everyone may be acted as (``allowed_users`` is set)."""
        return bool(self._users)

    def in_config(self, user_id: str) -> bool:
        return user_id in self._users

    def allows(self, user_id: str) -> bool:
        return not self._users or user_id in self._users or user_id in self.granted

    def check(self, user_id: str) -> None:
        if not self.allows(user_id):
            raise ApiError(403, "user_not_allowed", f"user {user_id!r} is not on this API's allowed_users list")


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    api_key: str | None = Security(api_key_scheme),
) -> None:
    """Route dependency: a valid key, unless the API runs anonymously; then the users granted
    through ``/admin/users`` are brought up to date (a store read every few seconds at most)."""
    ctx = request.app.state.ctx
    keys: ApiKeys = ctx.keys
    if keys.required:
        presented = bearer.credentials if bearer is not None else api_key
        if not keys.accepts(presented):
            raise _unauthorized("missing API key" if not presented else "invalid API key")
    await ctx.refresh_granted_users()


async def require_admin(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    api_key: str | None = Security(api_key_scheme),
) -> str:
    """Route dependency of ``/admin/*``: an admin key (401 without a valid key, 403 with an API key);
    answers who is calling (``admin_key:<name>``), for the log."""
    ctx = request.app.state.ctx
    presented = bearer.credentials if bearer is not None else api_key
    name = ctx.admins.match(presented)
    if name is not None:
        return f"admin_key:{name}"
    if ctx.keys.accepts(presented):
        off = "" if ctx.admins.enabled else " (admin_keys is empty: the admin endpoints are off)"
        raise ApiError(403, "admin_key_required", f"this API key may not use /admin: send an admin key{off}")
    raise _unauthorized("missing admin key" if not presented else "invalid admin key")


def _unauthorized(reason: str) -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        f"{reason}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )
