"""Redis store (``store.backend: redis``), on redis-py's asyncio client.

Layout (every key under ``key_prefix``, ``ccbridge:`` by default; ``<key>`` is
``str(ConversationKey)``):

* ``conv:<key>`` — the conversation, one JSON document (:mod:`.codec` rows); ``put`` refuses
  (:class:`~core.errors.Fenced`) to replace one carrying a higher ``fence``;
* ``session:<session id>`` — the key of the conversation holding that session;
* ``idx:all`` and ``idx:<field>:<value>`` for ``platform`` / ``owner`` /
  ``thread`` / ``bot`` — sorted sets of conversation keys scored by
  ``last_active_at``: ``list`` reads the most selective one newest first;
* ``running`` — keys of the conversations recorded ``running`` (for ``mark_interrupted``);
* ``turns:<key>`` — a sorted set of turn ids in the order they were first written
  (scores from ``turn_seq``), ``turn:<key>`` — a hash turn id -> JSON turn;
  ``running_turns`` — ``[key, turn id]`` of the turns recorded ``running``;
* ``seen:<claimed key>`` — ``claim_key`` (``SET NX PX``);
* ``meta`` — a hash of the named values; ``store_id`` — the store's id.

Writes that belong together (a conversation with its indexes, a turn with the
history cap, a delete with its turns) run as one Lua script: atomic, and one
round trip. The scripts touch keys they compute from the prefix, so the store
runs on one Redis (or a replicated primary), not a Redis Cluster.

Faults: a refused, reset or timed-out connection (or a loading / read-only /
out-of-memory server) raises :class:`~core.errors.StoreUnavailable`; the
client's pool reconnects by itself, so a server that comes back is used again.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Unpack

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    BusyLoadingError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from ..errors import Fenced, StoreError, StoreUnavailable
from ..keys import ConversationKey
from .base import FILTER_FIELDS, ConversationStore, ListFilter, check_filter, translating
from .codec import conversation_from_row, conversation_to_row, turn_from_row, turn_to_row
from .records import Conversation, TurnRecord
from .settings import RedisStoreSettings, redact_url

#: the exceptions that mean "the server cannot be reached or used right now"
UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    ConnectionError,
    TimeoutError,
    OSError,
)

_PUT = """
local old = redis.call('GET', KEYS[1])
if old then
  local stored = cjson.decode(old)
  if (tonumber(stored['fence']) or 0) > tonumber(ARGV[7]) then return 0 end
  local prev = stored['session_id']
  if prev ~= ARGV[3] and redis.call('GET', ARGV[6] .. prev) == ARGV[2] then
    redis.call('DEL', ARGV[6] .. prev)
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[5] == 'running' then redis.call('SADD', KEYS[3], ARGV[2]) else redis.call('SREM', KEYS[3], ARGV[2]) end
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], ARGV[4], ARGV[2]) end
return 1
"""

_DELETE = """
local old = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
if not old then return 0 end
local sid = cjson.decode(old)['session_id']
if redis.call('GET', ARGV[2] .. sid) == ARGV[1] then redis.call('DEL', ARGV[2] .. sid) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[1])
for i = 5, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""

_PUT_TURN = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[3]), ARGV[1])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] == 'running' then redis.call('SADD', KEYS[4], ARGV[5]) else redis.call('SREM', KEYS[4], ARGV[5]) end
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[1], extra)
  for i = 1, #old, 2 do redis.call('HDEL', KEYS[2], old[i]) end
end
return 1
"""

# Replace a document only if it is still the one read (mark_interrupted's compare-and-set).
_CAS = """
local current
if ARGV[3] == '' then current = redis.call('GET', KEYS[1]) else current = redis.call('HGET', KEYS[1], ARGV[3]) end
if current ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('HSET', KEYS[1], ARGV[3], ARGV[2]) end
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"""

_LIST_PAGE = 200


def classify(exc: BaseException, what: str) -> StoreError:
    """StoreUnavailable for an unreachable / unusable server, StoreError otherwise."""
    if isinstance(exc, UNREACHABLE) or (isinstance(exc, ResponseError) and str(exc).startswith(("OOM", "MISCONF"))):
        return StoreUnavailable(f"{what}: {exc}")
    return StoreError(f"{what}: {exc}")


_guard = translating("Redis", (TimeoutError, RedisError, OSError), classify)  # redis-py's exceptions become the store's


def connect(url: str, *, timeout: float = 5.0) -> aioredis.Redis:
    """A client for ``url`` that retries a dropped connection once and fails fast when refused."""
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


class RedisStore(ConversationStore):
    """Conversations, history, claims and named values in one Redis database."""

    def __init__(self, url: str, *, key_prefix: str = "ccbridge:", history_limit: int = 1000) -> None:
        self.url = url
        self.prefix = key_prefix
        self.history_limit = history_limit
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: RedisStoreSettings) -> RedisStore:
        assert settings.url is not None  # the settings' validator guarantees it
        return cls(
            settings.url.get_secret_value(), key_prefix=settings.key_prefix, history_limit=settings.history_limit
        )

    def describe(self) -> str:
        return f"Redis {redact_url(self.url)} (prefix {self.prefix!r})"

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- connection ------------------------------------------------------------
    async def open(self) -> None:
        if self._redis is not None:
            return
        client = connect(self.url)
        try:
            await client.ping()
            await client.set(self.k("store_id"), uuid.uuid4().hex, nx=True)
        except (RedisError, OSError) as exc:
            await client.aclose()
            error = classify(exc, f"cannot reach Redis at {redact_url(self.url)}")
            raise type(error)(f"store.url: {error}") from exc
        self._redis = client
        for name, source in (("put", _PUT), ("delete", _DELETE), ("put_turn", _PUT_TURN), ("cas", _CAS)):
            self._scripts[name] = client.register_script(source)

    async def close(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the Redis store is not open")
        return self._redis

    # -- the contract ----------------------------------------------------------
    @_guard
    async def ping(self, *, write: bool = False) -> None:
        if self._redis is None:
            await self.open()
        await self.redis.ping()
        if write:
            await self.redis.set(self.k("last_ping"), str(time.time()))

    @_guard
    async def store_id(self) -> str:
        return str(await self.redis.get(self.k("store_id")) or "")

    @_guard
    async def get(self, key: ConversationKey) -> Conversation | None:
        raw = await self.redis.get(self.k("conv", str(key)))
        return conversation_from_row(json.loads(raw)) if raw else None

    def _indexes(self, key: ConversationKey) -> list[str]:
        names = [self.k("idx", "all")]
        for field in sorted(FILTER_FIELDS):
            value = getattr(key, field)
            if value is not None:
                names.append(self.k("idx", field, value))
        return names

    @_guard
    async def put(self, conversation: Conversation) -> None:
        row = conversation_to_row(conversation)
        key = row["key"]
        written = await self._scripts["put"](
            keys=[
                self.k("conv", key),
                self.k("session", conversation.session_id),
                self.k("running"),
                *self._indexes(conversation.key),
            ],
            args=[
                json.dumps(row, ensure_ascii=False),
                key,
                conversation.session_id,
                repr(conversation.last_active_at),
                conversation.status,
                self.k("session", ""),
                conversation.fence,
            ],
        )
        if not written:
            raise Fenced(f"{conversation.key} has a newer owner (its fence is above {conversation.fence})")

    @_guard
    async def delete(self, key: ConversationKey) -> bool:
        name = str(key)
        existed = await self._scripts["delete"](
            keys=[
                self.k("conv", name),
                self.k("turns", name),
                self.k("turn", name),
                self.k("running"),
                *self._indexes(key),
            ],
            args=[name, self.k("session", "")],
        )
        return bool(existed)

    @_guard
    async def find_session(self, session_id: str) -> Conversation | None:
        key = await self.redis.get(self.k("session", session_id))
        if not key:
            return None
        conv = await self.get(ConversationKey.parse(key))
        return conv if conv is not None and conv.session_id == session_id else None

    @_guard
    async def list(self, *, limit: int = 100, **where: Unpack[ListFilter]) -> list[Conversation]:
        check_filter(where)
        # the most selective index of those the filter names; the other fields are checked on the records
        field = next((f for f in ("owner", "thread", "platform", "bot") if f in where), None)
        index = self.k("idx", field, where[field]) if field else self.k("idx", "all")  # type: ignore[literal-required]
        found: list[Conversation] = []
        start = 0
        while len(found) < limit:
            names = await self.redis.zrevrange(index, start, start + _LIST_PAGE - 1)
            if not names:
                break
            start += len(names)
            raws = await self.redis.mget([self.k("conv", n) for n in names])
            for raw in raws:
                if raw is None:
                    continue
                conv = conversation_from_row(json.loads(raw))
                if all(getattr(conv.key, f) == v for f, v in where.items()):
                    found.append(conv)
        return found[:limit]

    @_guard
    async def put_turn(self, turn: TurnRecord) -> None:
        key = str(turn.key)
        await self._scripts["put_turn"](
            keys=[self.k("turns", key), self.k("turn", key), self.k("turn_seq"), self.k("running_turns")],
            args=[
                turn.turn_id,
                json.dumps(turn_to_row(turn), ensure_ascii=False),
                self.history_limit,
                turn.status,
                json.dumps([key, turn.turn_id]),
            ],
        )

    @_guard
    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]:
        if limit <= 0:
            return []
        name = str(key)
        ids = await self.redis.zrange(self.k("turns", name), -limit, -1)
        if not ids:
            return []
        raws = await self.redis.hmget(self.k("turn", name), ids)
        return [turn_from_row(json.loads(raw)) for raw in raws if raw is not None]

    @_guard
    async def mark_interrupted(self, instance_id: str) -> int:
        count = 0
        for name in await self.redis.smembers(self.k("running")):
            doc = self.k("conv", name)
            raw = await self.redis.get(doc)
            row = json.loads(raw) if raw else None
            if row is None or row["status"] != "running":
                await self.redis.srem(self.k("running"), name)
            elif row.get("instance_id") in (instance_id, None, ""):
                new = json.dumps({**row, "status": "interrupted"}, ensure_ascii=False)
                count += await self._scripts["cas"](keys=[doc, self.k("running")], args=[raw, new, "", name])
        for member in await self.redis.smembers(self.k("running_turns")):
            name, turn_id = json.loads(member)
            doc = self.k("turn", name)
            raw = await self.redis.hget(doc, turn_id)
            row = json.loads(raw) if raw else None
            if row is None or row["status"] != "running":
                await self.redis.srem(self.k("running_turns"), member)
            elif row.get("instance_id") in (instance_id, None, ""):
                new = json.dumps(
                    {**row, "status": "interrupted", "error": row.get("error") or "cut off by a restart"},
                    ensure_ascii=False,
                )
                await self._scripts["cas"](keys=[doc, self.k("running_turns")], args=[raw, new, turn_id, member])
        return int(count)

    @_guard
    async def claim_key(self, key: str, ttl: float) -> bool:
        return bool(await self.redis.set(self.k("seen", key), "1", nx=True, px=max(1, int(ttl * 1000))))

    @_guard
    async def put_meta(self, name: str, value: str) -> None:
        await self.redis.hset(self.k("meta"), name, value)

    @_guard
    async def get_meta(self, name: str) -> str | None:
        value = await self.redis.hget(self.k("meta"), name)
        return None if value is None else str(value)

    @_guard
    async def delete_meta(self, name: str) -> bool:
        return bool(await self.redis.hdel(self.k("meta"), name))

    @_guard
    async def list_meta(self, prefix: str) -> dict[str, str]:
        values = await self.redis.hgetall(self.k("meta"))  # few values: filtered here (names may hold glob characters)
        return {str(n): str(v) for n, v in values.items() if str(n).startswith(prefix)}

    @_guard
    async def add_meta(self, name: str, amount: int) -> int:
        return int(await self.redis.hincrby(self.k("meta"), name, int(amount)))
