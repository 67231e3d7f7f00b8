"""Coordination on Redis: several instances of one bot behind one Redis (``coordination: redis``).

Keys (all under ``coordination.key_prefix`` + the bot's name):

* ``alive:<instance>`` — the instance's heartbeat, renewed every ``lease_ttl / 3``
  seconds, expiring ``lease_ttl`` seconds after the last one;
* ``lease:<conversation>`` — ``<instance>|<fence>``: who owns the conversation.
  It has no expiry of its own: it holds while its owner's heartbeat lives (so
  it never lapses in the middle of a long turn), and another instance takes it
  over only once that heartbeat is gone, with the next fencing token
  (``fence:<conversation>``, incremented atomically in the same script);
* ``inbox:<instance>`` — a stream per instance: messages handed to it by others;
  ``reply:<id>`` — a stream per handed-over message, carrying its events back;
* ``seen:<key>`` — delivery ids: claimed on receipt (``<instance>|<run>``) by the
  receiving instance, ``+`` and kept long once the message was accepted; another
  instance receiving it meanwhile waits for the claim to settle: a duplicate once
  accepted, free again when the claimer died first (its heartbeat lapsed, or it
  restarted under the same id), so the platform's retry is answered;
* ``refused:<who>`` — the refusal cooldown; ``approval:<id>`` — pending approval
  requests (with the instance waiting for them); ``leader:<name>`` — the
  instance allowed the one connection a platform permits (Telegram long polling).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import ConfigError, StoreUnavailable
from ..events import ApprovalRequest
from ..keys import ConversationKey
from ..wire import request_from_wire, request_to_wire
from .base import (
    ApprovalAnswer,
    ApprovalBus,
    ApprovalHandler,
    Coordination,
    OwnerGone,
    RefusalCooldown,
    SeenKeys,
    SharedNotes,
)
from .memory import MemoryLocks

if TYPE_CHECKING:
    from ..config import CoordinationSettings
    from ..store import ConversationStore

log = logging.getLogger(__name__)

_TAKE = """
local current = redis.call('GET', KEYS[1])
if current then
  local owner = string.match(current, '^(.*)|')
  if owner == ARGV[1] or redis.call('EXISTS', ARGV[2] .. owner) == 1 then
    return current
  end
end
local fence = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. '|' .. fence
redis.call('SET', KEYS[1], value)
if current then return {value, current} end
return value
"""
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == '+' or holder == ARGV[1] then
  return 0
end
local who = holder and (string.match(holder, '^(.*)|') or holder)
if who and who ~= ARGV[4] and redis.call('EXISTS', ARGV[3] .. who) == 1 then
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_SEEN, _CLAIMED, _HELD = 0, 1, 2  # what _CLAIM answers: remembered, claimed now, held by another live instance
_SETTLE_POLL = 0.2  # seconds between looks at a delivery another instance holds
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current and string.match(current, '^(.*)|') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RENEW_LEADER = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

Handler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Ownership:
    """Who owns a conversation now: an instance, its fencing token; who held it before a takeover."""

    instance: str
    fence: int
    mine: bool
    taken_from: str | None = None


_HANDED_MS = 3_600_000  # a handed-over message not taken up within an hour is nobody's
_INBOX_AT_MS = 7 * 24 * 3_600_000  # a restart under the same id within a week reads on where it stopped


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _parse(value: str) -> tuple[str, int]:
    instance, _, fence = value.rpartition("|")
    return instance, int(fence or 0)


class RedisBackend:
    """The connection, the heartbeat, and the instance's inbox."""

    def __init__(self, url: str, prefix: str, instance_id: str, lease_ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.instance_id = instance_id
        self.lease_ms = int(lease_ttl * 1000)
        self.run = secrets.token_hex(4)  # this process's run: a claim by an earlier run under the same id is void
        self.redis = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=5, health_check_interval=10)
        self._take = self.redis.register_script(_TAKE)
        self._release = self.redis.register_script(_RELEASE)
        self._renew_leader = self.redis.register_script(_RENEW_LEADER)
        self._claim = self.redis.register_script(_CLAIM)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False  # close() has begun: the heartbeat and the inbox reader end
        self._handlers: list[Handler] = []
        self.owned: set[str] = set()  # the conversations whose lease this instance holds
        self.started = False
        #: called with a conversation's name when this instance finds it no longer owns it (another took
        #: it over while this one could not renew its heartbeat): its running turn is stopped
        self.on_lost: Callable[[str], Awaitable[None]] | None = None
        self._last_beat = time.monotonic()
        self._led: dict[str, float] = {}  # leader leases held: when each was last renewed (monotonic)

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        if self.started:
            return
        self._closing = False
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(
                f"cannot reach the coordination Redis ({_safe(self.url)}): {exc}", key="coordination.url"
            ) from exc
        seconds, micros = await self.redis.time()  # the server's clock
        now = f"{int(seconds) * 1000 + int(micros) // 1000}-0"
        # A restart under the same id reads on from where its previous run stopped: a message handed to
        # it while it was down (its heartbeat not yet lapsed, so the receiver waits) is taken up now.
        since = await self.redis.get(self.k("inbox-at", self.instance_id)) or now
        await self.redis.set(self.k("inbox-at", self.instance_id), since, px=_INBOX_AT_MS)
        await self._beat()
        self.started = True
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="ccbridge-heartbeat"))
        self._tasks.append(asyncio.create_task(self._read_inbox(since, now), name="ccbridge-inbox"))

    async def close(self) -> None:
        self._closing = True
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        while pending:  # a cancel the client swallows (one landing while it connects) is sent again
            _, pending = await asyncio.wait(pending, timeout=0.5)
            for task in pending:
                task.cancel()
        self._tasks.clear()
        if self.started:
            try:
                await self.release_all()
                await self.redis.delete(self.k("alive", self.instance_id))
            except (RedisError, OSError) as exc:
                log.warning("could not hand over this instance's conversations: %s", exc)
        await self.redis.aclose()
        self.started = False

    async def _beat(self) -> None:
        await self.redis.set(self.k("alive", self.instance_id), json.dumps({"since": time.time()}), px=self.lease_ms)
        self._last_beat = time.monotonic()

    async def _heartbeat(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self._beat()
                await self._check_leases()
            except (RedisError, OSError) as exc:
                log.warning("coordination heartbeat failed: %s", exc)
                if time.monotonic() - self._last_beat > self.lease_ms / 1000:  # others may own them now
                    await self._lost(sorted(self.owned), "its heartbeat could not be renewed for the lease's time")

    async def _check_leases(self) -> None:
        """Conversations another instance took over (this one's heartbeat lapsed for a while) are lost."""
        names = sorted(self.owned)
        if not names:
            return
        values = await self.redis.mget([self.k("lease", name) for name in names])
        mine = f"{self.instance_id}|"
        await self._lost([n for n, v in zip(names, values, strict=True) if not (v or "").startswith(mine)], "")

    async def _lost(self, names: list[str], why: str) -> None:
        for name in names:
            self.owned.discard(name)
            if why:
                log.warning("%s may be owned by another instance now (%s)", name, why)
            else:
                log.debug("%s is owned by another instance now", name)
            if self.on_lost is not None:
                try:
                    await self.on_lost(name)
                except Exception as exc:  # noqa: BLE001 (the heartbeat goes on)
                    log.warning("could not stop the turn of %s: %r", name, exc)

    async def problem(self) -> str | None:
        """Why this instance cannot coordinate right now (for ``/ready``); None when it can."""
        try:
            await asyncio.wait_for(self.redis.ping(), 2)
        except (RedisError, OSError, TimeoutError) as exc:
            return f"coordination: the coordination Redis ({_safe(self.url)}) is unreachable: {exc or 'timed out'}"
        if self.started and time.monotonic() - self._last_beat > self.lease_ms / 1000:
            return "coordination: this instance's heartbeat lapsed (other instances may take its conversations)"
        return None

    async def alive(self, instance: str) -> bool:
        return bool(await self.redis.exists(self.k("alive", instance)))

    # -- leases ----------------------------------------------------------------
    async def owner(self, key: ConversationKey) -> Ownership:
        """The conversation's owner; this instance takes it when nobody (alive) holds it."""
        name = str(key)
        try:
            result = await self._take(
                keys=[self.k("lease", name), self.k("fence", name)], args=[self.instance_id, self.k("alive", "")]
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the coordination Redis is unreachable: {exc}") from exc
        before = None
        if isinstance(result, list):
            result, previous = result
            before = _parse(previous)[0]
        instance, fence = _parse(result)
        mine = instance == self.instance_id
        if mine:
            self.owned.add(name)
        return Ownership(instance, fence, mine, before if before != self.instance_id else None)

    async def still_owner(self, key: ConversationKey, fence: int) -> bool:
        value = await self.redis.get(self.k("lease", str(key)))
        return value == f"{self.instance_id}|{fence}"

    async def release_all(self) -> int:
        released = 0
        for name in list(self.owned):
            released += int(await self._release(keys=[self.k("lease", name)], args=[self.instance_id]))
            self.owned.discard(name)
        return released

    async def leader(self, name: str) -> bool:
        """Hold (or take) the leadership of ``name``; False while another live instance holds it.

        A renewal that fails (a Redis hiccup) keeps a leader leading while its lease cannot have lapsed
        yet: one failed call does not drop the platform connection."""
        try:
            held = bool(await self._renew_leader(keys=[self.k("leader", name)], args=[self.instance_id, self.lease_ms]))
        except (RedisError, OSError) as exc:
            renewed = self._led.get(name)
            still = renewed is not None and time.monotonic() - renewed < self.lease_ms / 1000
            log.warning(
                "leader lease %s: %s%s", name, exc, " (still leading until the lease runs out)" if still else ""
            )
            return still
        if held:
            self._led[name] = time.monotonic()
        else:
            self._led.pop(name, None)
        return held

    async def resign(self, name: str) -> None:
        self._led.pop(name, None)
        await self._release(keys=[self.k("leader", name)], args=[self.instance_id])
        value = await self.redis.get(self.k("leader", name))
        if value == self.instance_id:
            await self.redis.delete(self.k("leader", name))

    # -- messages between instances --------------------------------------------
    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def send(self, instance: str, message: dict[str, Any]) -> None:
        """Put ``message`` in ``instance``'s inbox. One carrying a ``channel`` hands a message over: it is
        taken up once (:meth:`take`), by that instance, or by the sender if that instance is gone first."""
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip, the claim first
            if "channel" in message:
                pipe.set(self.k("handed", message["channel"]), instance, px=_HANDED_MS)
            pipe.xadd(self.k("inbox", instance), {"m": json.dumps(message)}, maxlen=10_000, approximate=True)
            await pipe.execute()

    async def take(self, channel: str) -> bool:
        """Claim the message handed over on ``channel``; False when it was claimed already (or expired)."""
        return bool(await self.redis.delete(self.k("handed", channel)))

    async def _read_inbox(self, since: str, started: str) -> None:
        """Handle the inbox from ``since``; entries from before ``started`` (left by a previous run under
        this id) only when they hand over a message nobody has taken up yet."""
        stream = self.k("inbox", self.instance_id)
        last = since
        while not self._closing:
            try:
                batches = await self.redis.xread({stream: last}, block=1000, count=50)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("reading this instance's inbox failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    last = entry_id
                    try:
                        message = json.loads(fields["m"])
                    except (KeyError, ValueError):
                        log.warning("skipping a malformed inbox entry %s", entry_id)
                        continue
                    if not await self._takes(message, entry_id, started):
                        continue
                    for handler in list(self._handlers):
                        try:
                            await handler(message)
                        except Exception:
                            log.exception("handling an inbox message of type %s failed", message.get("type"))
            if batches:
                try:
                    await self.redis.set(self.k("inbox-at", self.instance_id), last, px=_INBOX_AT_MS)
                except (RedisError, OSError) as exc:
                    log.debug("could not note the inbox position: %s", exc)

    async def _takes(self, message: dict[str, Any], entry_id: str, started: str) -> bool:
        channel = message.get("channel")
        if isinstance(channel, str):
            try:
                if await self.take(channel):
                    return True
            except (RedisError, OSError) as exc:
                log.warning("could not claim a handed-over message (%s); handling it", exc)
                return True
            log.info("skipping a %s message its sender took back (this instance was gone)", message.get("type"))
            return False
        return _stream_id(entry_id) >= _stream_id(started)  # earlier ones were for a previous run

    def new_channel(self) -> str:
        return secrets.token_urlsafe(12)

    async def reply(self, channel: str, event: dict[str, Any]) -> None:
        key = self.k("reply", channel)
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip per event
            pipe.xadd(key, {"e": json.dumps(event)}, maxlen=10_000, approximate=True)
            pipe.pexpire(key, 3_600_000)
            await pipe.execute()

    async def replies(
        self, channel: str, timeout: float, *, sender: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The events sent to ``channel``, until a ``Done``.

        Raises :class:`OwnerGone` when ``sender``'s heartbeat lapses while it is quiet, and
        ``TimeoutError`` after ``timeout`` seconds without a word.
        """
        key = self.k("reply", channel)
        last = "0-0"
        quiet_since = time.monotonic()
        heard = False
        try:
            while True:
                batches = await self.redis.xread({key: last}, block=500, count=100)
                if not batches:
                    if sender is not None and not await self.alive(sender):
                        # never taken up: this receiver takes it back (and runs it); else the owner had it
                        raise OwnerGone(sender, heard or not await self.take(channel))
                    if time.monotonic() - quiet_since > timeout:
                        raise TimeoutError(f"no word from the owning instance for {timeout:g}s")
                    continue
                heard = True
                quiet_since = time.monotonic()
                for _, entries in batches:
                    for entry_id, fields in entries:
                        last = entry_id
                        event = json.loads(fields["e"])
                        yield event
                        if event.get("type") == "Done":
                            return
        finally:
            try:
                await self.redis.delete(key)
            except (RedisError, OSError):
                pass


class RedisSeenKeys(SeenKeys):
    """Delivery ids across instances: a claim names the claiming instance until it is confirmed.

    Once confirmed (``+``), a delivery is a duplicate for everyone until the TTL. A delivery another
    instance claimed but has not confirmed yet is waited for: it is a duplicate once that instance
    confirms it (or, still alive, holds it past the lease's time); when that instance dies first (its
    heartbeat lapses), the claim is free, so a platform's retry landing here is answered, not lost.
    """

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    async def first_time(self, key: str, ttl: float) -> bool:
        b = self.backend
        loop = asyncio.get_running_loop()
        settle_by = loop.time() + b.lease_ms / 1000 + 1.0  # a dead claimer's heartbeat has lapsed by then
        while True:
            try:
                answer = await b._claim(
                    keys=[b.k("seen", key)],
                    args=[f"{b.instance_id}|{b.run}", int(ttl * 1000), b.k("alive", ""), b.instance_id],
                )
            except (RedisError, OSError) as exc:
                raise StoreUnavailable(f"the coordination Redis is unreachable: {exc}") from exc
            if answer != _HELD:
                return answer == _CLAIMED
            if loop.time() >= settle_by:
                log.info("delivery %s is still held by a live instance; taken as a repeat", key)
                return False
            await asyncio.sleep(_SETTLE_POLL)

    async def confirm(self, key: str, ttl: float) -> None:
        try:
            await self.backend.redis.set(self.backend.k("seen", key), "+", px=int(ttl * 1000))
        except (RedisError, OSError) as exc:
            log.warning("could not confirm delivery %s: %s", key, exc)


class RedisRefusals(RefusalCooldown):
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    async def should_notify(self, who: str, cooldown: float) -> bool:
        try:
            return bool(
                await self.backend.redis.set(self.backend.k("refused", who), "1", nx=True, px=int(cooldown * 1000))
            )
        except (RedisError, OSError):
            return True


class RedisApprovalBus(ApprovalBus):
    """Pending requests in Redis (any instance checks who may answer); answers to the waiting instance's inbox."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self._handlers: list[ApprovalHandler] = []
        backend.subscribe(self._on_message)

    async def subscribe(self, handler: ApprovalHandler) -> None:
        self._handlers.append(handler)

    async def announce(self, request: ApprovalRequest) -> None:
        data = {"request": request_to_wire(request), "instance": self.backend.instance_id}
        ttl = int((request.timeout + 60) * 1000)
        k = self.backend.k
        # the user's requests, by when they expire (a key of its own would outlive none of them)
        mine = k("approvals-of", request.requested_by)
        async with self.backend.redis.pipeline(transaction=False) as pipe:
            pipe.set(k("approval", request.id), json.dumps(data), px=ttl)
            pipe.zadd(mine, {request.id: time.time() + ttl / 1000})
            pipe.pttl(mine)
            *_, left = await pipe.execute()
        if left < ttl:  # the list lives as long as its longest-lived request
            await self.backend.redis.pexpire(mine, ttl)

    async def withdraw(self, request_id: str) -> None:
        redis, k = self.backend.redis, self.backend.k
        raw = await redis.get(k("approval", request_id))
        await redis.delete(k("approval", request_id))
        if raw:
            await redis.zrem(k("approvals-of", json.loads(raw)["request"]["requested_by"]), request_id)

    async def asked_by(self, user_id: str) -> list[ApprovalRequest]:
        redis, k = self.backend.redis, self.backend.k
        ids = await redis.zrangebyscore(k("approvals-of", user_id), time.time(), "+inf")
        if not ids:
            return []
        raws = await redis.mget([k("approval", i) for i in ids])
        return [request_from_wire(json.loads(raw)["request"]) for raw in raws if raw]

    async def lookup(self, request_id: str) -> ApprovalRequest | None:
        raw = await self.backend.redis.get(self.backend.k("approval", request_id))
        return request_from_wire(json.loads(raw)["request"]) if raw else None

    async def publish(self, answer: ApprovalAnswer) -> None:
        raw = await self.backend.redis.get(self.backend.k("approval", answer.request_id))
        if raw is None:
            return
        instance = json.loads(raw)["instance"]
        message = {
            "type": "approval",
            "request_id": answer.request_id,
            "decision": answer.decision.value,
            "user_id": answer.user_id,
            "reason": answer.reason,
        }
        if instance == self.backend.instance_id:
            await self._on_message(message)
        else:
            await self.backend.send(instance, message)

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "approval":
            return
        from ..events import Decision

        answer = ApprovalAnswer(
            str(message["request_id"]),
            Decision(message["decision"]),
            str(message.get("user_id") or ""),
            message.get("reason") if isinstance(message.get("reason"), str) else None,
        )
        for handler in list(self._handlers):
            await handler(answer)

    async def close(self) -> None:
        return None


class RedisNotes(SharedNotes):
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    async def put(self, name: str, text: str, ttl: float) -> None:
        await self.backend.redis.set(self.backend.k("note", name), text, px=max(1, int(ttl * 1000)))

    async def get(self, name: str) -> str | None:
        return await self.backend.redis.get(self.backend.k("note", name))  # type: ignore[no-any-return]


class RedisCoordination(Coordination):
    """:class:`Coordination` whose parts live in Redis; ``backend`` also routes messages to owners."""

    backend: RedisBackend

    async def close(self) -> None:
        await self.backend.close()


def create_redis_coordination(
    settings: CoordinationSettings, store: ConversationStore, instance_id: str, name: str = "bot"
) -> Coordination:
    import os

    url = settings.url or os.environ.get("REDIS_URL")
    if not url:
        raise ConfigError(
            "coordination.url is required for the redis backend (or set REDIS_URL)", key="coordination.url"
        )
    backend = RedisBackend(url, f"{settings.key_prefix}{name}:", instance_id, settings.lease_ttl)
    coordination = RedisCoordination(
        instance_id=instance_id,
        locks=MemoryLocks(),  # an owner serializes its own conversations; leases keep them on one owner
        seen=RedisSeenKeys(backend),
        refusals=RedisRefusals(backend),
        approvals=RedisApprovalBus(backend),
        notes=RedisNotes(backend),
    )
    coordination.backend = backend
    return coordination


def _safe(url: str) -> str:
    """A Redis URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
