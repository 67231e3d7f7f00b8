"""Receiving over HTTP callbacks: the Request URL Feishu POSTs events and card actions to.

Every request is checked here, before anything runs (lark-oapi's
``EventDispatcherHandler.do()`` is not used: it answers a bad signature with 500, reads
the ``X-Lark-*`` headers case-sensitively and never checks the timestamp's age):

* bodies over 1 MB: 413 unread; not JSON: 400;
* with an *Encrypt Key*: ``X-Lark-Signature`` must be ``sha256(timestamp + nonce +
  encrypt_key + body)`` (headers read case-insensitively, compared in constant time)
  and ``X-Lark-Request-Timestamp`` within ``max_request_age`` of now — else 401; the body
  must be the ``{"encrypt": ...}`` envelope (AES-256-CBC, key ``sha256(encrypt_key)``),
  else 400. Only Feishu's ``url_verification`` challenge may come unsigned (it is still
  encrypted and carries the token);
* with a *Verification Token*: the body's token (``header.token``, or ``token`` in the
  challenge) must match — else 401; without an encrypt key a request carrying a
  timestamp out of the window is refused too (401);
* the ``url_verification`` challenge is answered with ``{"challenge": ...}``.

What passes goes to the adapter as the decrypted body: events are handed off (200 at
once, the work runs in the background); a card action's answer (a toast) is the
response body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lark_oapi.core.utils import AESCipher

from core import ConfigError
from core.listener import Listener

from .config import FeishuConfig

if TYPE_CHECKING:  # aiohttp is needed in callback mode only (the long connection runs without it)
    from aiohttp import web

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024
TIMESTAMP = "X-Lark-Request-Timestamp"
NONCE = "X-Lark-Request-Nonce"
SIGNATURE = "X-Lark-Signature"

OnCallback = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Refused(Exception):
    """A request that is not Feishu's (or not readable): answered with ``status``, nothing runs."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


class CallbackVerifier:
    """Checks one request (headers + exact body bytes) and returns its decrypted event body."""

    def __init__(
        self,
        encrypt_key: str | None,
        verification_token: str | None,
        max_age: float = 300.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.encrypt_key = encrypt_key or None
        self.verification_token = verification_token or None
        self.max_age = max_age
        self._clock = clock
        self._cipher = AESCipher(self.encrypt_key) if self.encrypt_key else None

    def open(self, headers: Any, raw: bytes) -> dict[str, Any]:
        """The request's event body; raises :class:`Refused` for anything Feishu would not send."""
        signed = self._check_signature(headers, raw)
        try:
            outer = json.loads(raw)
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(outer, dict):
            raise Refused(400, "the body is not a JSON object")
        body = self._decrypt(outer)
        token = body.get("token") if "header" not in body else (body.get("header") or {}).get("token")
        if self.verification_token is not None and not (
            isinstance(token, str) and hmac.compare_digest(token.encode(), self.verification_token.encode())
        ):
            raise Refused(401, "wrong or missing verification token")
        if self._cipher is not None and not signed and body.get("type") != "url_verification":
            raise Refused(401, "missing signature")
        return body

    def _check_signature(self, headers: Any, raw: bytes) -> bool:
        """True when the request is signed correctly and fresh; False when unsigned (raises when wrong)."""
        timestamp, nonce, sig = (_header(headers, name) for name in (TIMESTAMP, NONCE, SIGNATURE))
        if self.encrypt_key is None:
            if timestamp is not None:
                self._check_age(timestamp)
            return False
        if sig is None:
            return False
        if timestamp is None or nonce is None:
            raise Refused(401, "signature without timestamp / nonce")
        expected = signature(timestamp, nonce, self.encrypt_key, raw)
        if not hmac.compare_digest(expected.encode(), sig.strip().lower().encode()):
            raise Refused(401, "invalid signature")
        self._check_age(timestamp)
        return True

    def _check_age(self, timestamp: str) -> None:
        try:
            sent = float(timestamp)
        except ValueError:
            raise Refused(401, "unreadable timestamp") from None
        if abs(self._clock() - sent) > self.max_age:
            raise Refused(401, "stale request (timestamp outside the allowed window)")

    def _decrypt(self, outer: dict[str, Any]) -> dict[str, Any]:
        encrypted = outer.get("encrypt")
        if self._cipher is None:
            if encrypted is not None:
                raise Refused(400, "an encrypted body, but no encrypt_key is configured")
            return outer
        if encrypted is None and outer.get("type") == "url_verification":
            return outer  # a plain challenge (as lark-oapi accepts it): runs nothing; the token is still checked
        if not isinstance(encrypted, str) or not encrypted:
            raise Refused(400, "a plain body, but an encrypt_key is configured (Feishu encrypts every request)")
        try:
            body = json.loads(self._cipher.decrypt_str(encrypted))
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the body could not be decrypted with the encrypt_key") from None
        if not isinstance(body, dict):
            raise Refused(400, "the decrypted body is not a JSON object")
        return body


def _header(headers: Any, name: str) -> str | None:
    """A header whatever its case (aiohttp's headers are case-insensitive; plain dicts are searched)."""
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        wanted = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == wanted), None)
    return str(value) if value is not None else None


class CallbackServer:
    """The Request URL at ``host:port`` + ``path`` (and ``GET /healthz``)."""

    def __init__(self, config: FeishuConfig, on_callback: OnCallback, *, where: str = "") -> None:
        self.config = config
        self.where = where
        self.on_callback = on_callback
        self.verifier = CallbackVerifier(
            config.encrypt_key.get_secret_value() if config.encrypt_key else None,
            config.verification_token.get_secret_value() if config.verification_token else None,
            config.max_request_age,
        )
        self.listener = Listener(
            "Feishu callbacks",
            config.host,
            config.port,
            max_body=MAX_REQUEST_BYTES,
            too_large={"msg": "request body too large"},
        )

    async def start(self) -> int:
        try:
            return await self.listener.start({self.config.path: self.handle})
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "aiohttp":
                raise
            raise ConfigError(
                "callback mode needs aiohttp (pip install aiohttp), or use mode: long_connection",
                key=f"{self.where}.mode" if self.where else "mode",
            ) from None

    async def stop(self) -> None:
        await self.listener.stop()

    async def handle(self, request: web.Request, raw: bytes) -> web.Response:
        """One request (its whole body, within the size limit): verified, then handed to the adapter."""
        from aiohttp import web

        try:
            body = self.verifier.open(request.headers, raw)
        except Refused as exc:
            log.info("Feishu: refused a callback (%s, %s)", exc.status, exc.reason)
            return web.json_response({"msg": exc.reason}, status=exc.status)
        if body.get("type") == "url_verification":
            log.info("Feishu: answered the URL verification challenge")
            return web.json_response({"challenge": body.get("challenge", "")})
        answer = await self.on_callback(body)
        return web.json_response(answer if answer is not None else {"msg": "success"})
