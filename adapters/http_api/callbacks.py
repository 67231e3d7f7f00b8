"""Signed callbacks for finished async tasks.

Each callback is a JSON ``POST`` of the task (the body of ``GET /api/v1/tasks/{id}``)
with these headers::

    X-CCBridge-Event:      task.completed | task.failed
    X-CCBridge-Task-Id:    <task id>
    X-CCBridge-Timestamp:  <unix seconds>
    X-CCBridge-Signature:  sha256=<hex HMAC-SHA256(callback_secret, "<timestamp>." + raw body)>

Receivers recompute the HMAC over the timestamp, a dot and the raw body bytes,
compare in constant time, and reject old timestamps (replays). A delivery is
retried (``callback_retries`` times, with backoff) until the receiver answers 2xx.
Hosts that are not public addresses are refused unless ``callback_allow_private``
is set (see :mod:`.callback_hosts`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import httpx

from .callback_hosts import CallbackRefused, Resolver, checked_addresses, pinned_request, proxy_for, system_resolver

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-CCBridge-Signature"
TIMESTAMP_HEADER = "X-CCBridge-Timestamp"
EVENT_HEADER = "X-CCBridge-Event"
TASK_HEADER = "X-CCBridge-Task-Id"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age: float = 300.0) -> bool:
    """Check a received callback (what a receiver does; used by the tests too)."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    return age <= max_age and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class Delivery:
    url: str
    delivered: bool = False
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None


class CallbackSender:
    """POSTs signed callbacks with retries; owns its HTTP client (closed by :meth:`aclose`).

    Each attempt resolves the URL's host (``resolver``; default: the loop's
    ``getaddrinfo``), refuses non-public addresses unless ``allow_private``, and
    sends the request to the address it checked.
    """

    def __init__(
        self,
        secret: str,
        *,
        timeout: float,
        retries: int,
        backoff: float = 0.5,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
    ) -> None:
        if not secret.strip():
            raise ValueError("the callback secret is blank")
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.allow_private = allow_private
        self.resolver = resolver
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No keep-alive: a connection made for one host name must not carry another's request.
            self._client = httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0)
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, delivery: Delivery, body: bytes, *, event: str, task_id: str) -> Delivery:
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                EVENT_HEADER: event,
                TASK_HEADER: task_id,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            }
            delivery.attempts += 1
            try:
                response = await self._post(delivery.url, body, headers)
            except CallbackRefused as exc:
                delivery.last_status = None
                delivery.last_error = f"refused: {exc} (callback_allow_private is off)"
                log.warning("callback %s for task %s refused: %s", delivery.url, task_id, exc)
                return delivery
            except httpx.HTTPError as exc:
                delivery.last_status, delivery.last_error = None, f"{type(exc).__name__}: {exc}"
            except OSError as exc:
                delivery.last_status, delivery.last_error = None, f"{type(exc).__name__}: {exc}"
            else:
                delivery.last_status = response.status_code
                if response.is_success:
                    delivery.delivered, delivery.last_error = True, None
                    return delivery
                delivery.last_error = f"the receiver answered {response.status_code}"
            log.info(
                "callback %s for task %s failed (attempt %d): %s",
                delivery.url,
                task_id,
                attempt + 1,
                delivery.last_error,
            )
        log.warning("callback %s for task %s gave up after %d attempts", delivery.url, task_id, delivery.attempts)
        return delivery

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = await checked_addresses(host, port, self.resolver, allow_private=self.allow_private)
        if proxy_for(parsed):
            return await self.client.post(parsed, content=body, headers=headers)
        *others, last = addresses
        for address in others:
            try:
                return await self._post_to(parsed, address, body, headers)
            except httpx.ConnectError as exc:
                log.debug("callback host %s at %s unreachable (%s); trying its next address", host, address, exc)
        return await self._post_to(parsed, last, body, headers)

    async def _post_to(self, url: httpx.URL, address: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        target, host_header, extensions = pinned_request(url, address)
        return await self.client.post(target, content=body, headers={**headers, **host_header}, extensions=extensions)
