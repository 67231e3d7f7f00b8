"""HTTP-callback requests built the way Feishu sends them to a bot's event URL.

Wire format (matched against lark-oapi 1.7.5 ``EventDispatcherHandler`` and
``core/utils/decryptor.py``):

* **Body**: the event JSON (see :mod:`tests.feishu.events`), serialized compactly. With
  an *Encrypt Key* configured the body becomes ``{"encrypt": base64(iv + ciphertext)}``:
  AES-256-CBC, key = ``sha256(encrypt_key)`` (the raw 32-byte digest), a random 16-byte
  IV, PKCS#7 padding of the UTF-8 plaintext.
* **Headers**: ``X-Lark-Request-Timestamp`` (unix seconds), ``X-Lark-Request-Nonce``
  and, when an Encrypt Key is configured, ``X-Lark-Signature`` =
  ``sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()`` over the
  exact body bytes sent (the envelope when encrypted).
* **Authentication**: without an Encrypt Key only the verification token inside the body
  (``header.token``; ``token`` for ``url_verification``) authenticates a request.

What lark-oapi's ``do()`` does with them (pinned by the tests): a bad or missing signature
is answered **500** (``{"msg": "signature verification failed"}``), never 4xx; headers
are read from a plain ``dict`` *case-sensitively* (``X-Lark-Signature`` exactly: pass
headers through a case-insensitive mapping or normalise them first); ``url_verification``
is answered before the signature is checked; the timestamp's age is **never** checked,
so a replayed (stale) request passes: an adapter that cares must check it itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from Crypto.Cipher import AES  # pycryptodome: lark-oapi's own dependency

TIMESTAMP = "X-Lark-Request-Timestamp"
NONCE = "X-Lark-Request-Nonce"
SIGNATURE = "X-Lark-Signature"
STALE_AGE = 3600  # seconds a ``stale=True`` request's timestamp lies in the past


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``X-Lark-Signature``: hex sha256 of timestamp + nonce + encrypt_key + body."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def encrypt(plaintext: bytes, encrypt_key: str, *, iv: bytes | None = None) -> str:
    """The ``encrypt`` field: base64(iv + AES-256-CBC(sha256(encrypt_key), PKCS#7(plaintext)))."""
    iv = iv or secrets.token_bytes(AES.block_size)
    pad = AES.block_size - len(plaintext) % AES.block_size
    cipher = AES.new(hashlib.sha256(encrypt_key.encode()).digest(), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(plaintext + bytes([pad]) * pad)).decode()


def decrypt(encrypted: str, encrypt_key: str) -> bytes:
    """The inverse of :func:`encrypt` (for tests that read what a bot would decrypt)."""
    raw = base64.b64decode(encrypted)
    cipher = AES.new(hashlib.sha256(encrypt_key.encode()).digest(), AES.MODE_CBC, raw[: AES.block_size])
    padded = cipher.decrypt(raw[AES.block_size :])
    return padded[: -padded[-1]]


def set_token(body: dict[str, Any], token: str) -> dict[str, Any]:
    """A copy of ``body`` carrying ``token`` as its verification token (v2 header or flat)."""
    body = json.loads(json.dumps(body))
    if isinstance(body.get("header"), dict):
        body["header"]["token"] = token
    else:
        body["token"] = token
    return body


@dataclass
class CallbackRequest:
    """A request as Feishu would POST it: headers and the exact body bytes."""

    headers: dict[str, str]
    body: bytes
    plaintext: dict[str, Any] = field(default_factory=dict)  # the event before encryption

    def raw_request(self, uri: str = "/webhook/event") -> Any:
        """This request as a lark-oapi ``RawRequest`` (what ``EventDispatcherHandler.do()`` takes)."""
        import lark_oapi as lark

        raw = lark.RawRequest()
        raw.uri = uri
        raw.headers = dict(self.headers)
        raw.body = self.body
        return raw


def build(
    body: dict[str, Any],
    *,
    encrypt_key: str | None = None,
    verification_token: str | None = None,
    forge: bool = False,
    stale: bool = False,
    lowercase_headers: bool = False,
    timestamp: int | None = None,
) -> CallbackRequest:
    """Sign (and with ``encrypt_key`` encrypt) ``body`` the way Feishu does.

    ``verification_token`` replaces the token in the body. ``forge=True`` makes a request
    an attacker could make: signed with a wrong key when ``encrypt_key`` is set, or
    carrying a wrong verification token when it is not (the only check then).
    ``stale=True`` dates the (correctly signed) request :data:`STALE_AGE` seconds back.
    ``lowercase_headers`` sends ``x-lark-*`` (what HTTP/2 proxies deliver).
    """
    if verification_token is not None:
        body = set_token(body, verification_token)
    if forge and not encrypt_key:
        body = set_token(body, "forged-" + secrets.token_hex(8))
    plaintext = dumps(body)
    wire = dumps({"encrypt": encrypt(plaintext, encrypt_key)}) if encrypt_key else plaintext
    ts = str(timestamp if timestamp is not None else int(time.time()) - (STALE_AGE if stale else 0))
    nonce = secrets.token_hex(8)
    headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP: ts, NONCE: nonce}
    if encrypt_key:
        key = encrypt_key + "-forged" if forge else encrypt_key
        headers[SIGNATURE] = sign(ts, nonce, key, wire)
    if lowercase_headers:
        headers = {k.lower(): v for k, v in headers.items()}
    return CallbackRequest(headers, wire, body)


@dataclass
class CallbackResult:
    """The bot's answer to a callback."""

    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


async def post(url: str, request: CallbackRequest, *, timeout: float = 10.0) -> CallbackResult:
    """POST ``request`` to the bot's endpoint (loopback only) and return its answer."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.post(url, data=request.body, headers=request.headers) as response:
            return CallbackResult(response.status, await response.read(), dict(response.headers))
