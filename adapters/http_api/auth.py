"""API keys (``Authorization: Bearer`` or ``X-API-Key``) and the user allowlist."""

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


class UserAllowlist:
    """Which ``user_id`` values callers may act as (empty: any)."""

    def __init__(self, users: Iterable[str]) -> None:
        self._users = frozenset(users)

    def allows(self, user_id: str) -> bool:
        return not self._users or user_id in self._users

    def check(self, user_id: str) -> None:
        if not self.allows(user_id):
            raise ApiError(403, "user_not_allowed", f"user {user_id!r} is not on this API's allowed_users list")


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    api_key: str | None = Security(api_key_scheme),
) -> None:
    """Route dependency: a valid key, unless the API runs anonymously."""
    keys: ApiKeys = request.app.state.ctx.keys
    if not keys.required:
        return
    presented = bearer.credentials if bearer is not None else api_key
    if not keys.accepts(presented):
        reason = "missing API key" if not presented else "invalid API key"
        raise ApiError(
            401,
            "unauthorized",
            f"{reason}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
