"""Transcripts in the Redis database of the conversation store.

Keys, under the store's ``key_prefix`` (``<t>`` is ``project_key/session_id[/subpath]``):

* ``tx:entries:<t>`` — a list of JSON entries, in append order;
* ``tx:uuids:<t>`` — the uuids kept (a retried append skips them);
* ``tx:sessions:<project_key>`` — sorted set of the project's main transcripts by storage time (ms);
* ``tx:subkeys:<project_key>/<session_id>`` — a session's subpaths; ``tx:all`` — every ``<t>``.

An append is one Lua script (entries, uuids and indexes together).
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from claude_agent_sdk.types import SessionKey, SessionListSubkeysKey, SessionStoreEntry, SessionStoreListEntry
from redis.exceptions import RedisError

from ..errors import StoreError
from ..store.redis import _guard, classify, connect
from ..store.settings import redact_url
from .base import Clock, TranscriptStore, encode_entries, make_key, subpath_of

# KEYS: entries, uuids, index (the sessions zset, or the subkeys set), all
# ARGV: mtime, index member, t, 'zset' | 'set', then uuid / entry pairs ('' for no uuid)
_APPEND = """
local added = 0
for i = 5, #ARGV, 2 do
  local uuid = ARGV[i]
  if uuid == '' or redis.call('SADD', KEYS[2], uuid) == 1 then
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    added = added + 1
  end
end
if ARGV[4] == 'zset' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[1]), ARGV[2])
else
  redis.call('SADD', KEYS[3], ARGV[2])
end
redis.call('SADD', KEYS[4], ARGV[3])
return added
"""

# KEYS: all; ARGV: prefix, project_key, session_id, subpath ('' = the session with every subkey)
_DELETE = """
local base = ARGV[2] .. '/' .. ARGV[3]
local function drop(t)
  redis.call('DEL', ARGV[1] .. 'tx:entries:' .. t, ARGV[1] .. 'tx:uuids:' .. t)
  redis.call('SREM', KEYS[1], t)
end
local subkeys = ARGV[1] .. 'tx:subkeys:' .. base
if ARGV[4] ~= '' then
  drop(base .. '/' .. ARGV[4])
  redis.call('SREM', subkeys, ARGV[4])
  return 1
end
for _, sub in ipairs(redis.call('SMEMBERS', subkeys)) do drop(base .. '/' .. sub) end
redis.call('DEL', subkeys)
drop(base)
redis.call('ZREM', ARGV[1] .. 'tx:sessions:' .. ARGV[2], ARGV[3])
return 1
"""


def _t(key: SessionKey) -> str:
    sub = subpath_of(key)
    return f"{key['project_key']}/{key['session_id']}" + (f"/{sub}" if sub else "")


class RedisTranscripts(TranscriptStore):
    def __init__(self, url: str, *, key_prefix: str = "ccbridge:") -> None:
        self.url = url
        self.prefix = key_prefix
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, object] = {}
        self._clock = Clock()

    def describe(self) -> str:
        return f"transcripts in Redis {redact_url(self.url)} (prefix {self.prefix!r})"

    def k(self, *parts: str) -> str:
        return self.prefix + "tx:" + ":".join(parts)

    async def open(self) -> None:
        if self._redis is not None:
            return
        client = connect(self.url)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            error = classify(exc, f"cannot reach Redis at {redact_url(self.url)}")
            raise type(error)(f"store.url: {error}") from exc
        self._redis = client
        self._scripts = {"append": client.register_script(_APPEND), "delete": client.register_script(_DELETE)}

    async def close(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the Redis transcript store is not open")
        return self._redis

    @_guard
    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if not entries:
            return
        t, sub = _t(key), subpath_of(key)
        if sub:
            index, member = self.k("subkeys", f"{key['project_key']}/{key['session_id']}"), sub
        else:
            index, member = self.k("sessions", key["project_key"]), key["session_id"]
        args: list[str | int] = [self._clock.now(), member, t, "set" if sub else "zset"]
        for uuid, text in encode_entries(entries):
            args += [uuid or "", text]
        await self._scripts["append"](  # type: ignore[operator]
            keys=[self.k("entries", t), self.k("uuids", t), index, self.k("all")], args=args
        )

    @_guard
    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        raws = await self.redis.lrange(self.k("entries", _t(key)), 0, -1)
        return [json.loads(raw) for raw in raws] or None

    @_guard
    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        pairs = await self.redis.zrange(self.k("sessions", project_key), 0, -1, withscores=True)
        return [{"session_id": str(sid), "mtime": int(score)} for sid, score in pairs]

    @_guard
    async def delete(self, key: SessionKey) -> None:
        await self._scripts["delete"](  # type: ignore[operator]
            keys=[self.k("all")], args=[self.prefix, key["project_key"], key["session_id"], subpath_of(key)]
        )

    @_guard
    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        return sorted(await self.redis.smembers(self.k("subkeys", f"{key['project_key']}/{key['session_id']}")))

    @_guard
    async def keys(self) -> list[SessionKey]:
        found = []
        for t in await self.redis.smembers(self.k("all")):
            project_key, session_id, *rest = str(t).split("/", 2)
            found.append(make_key(project_key, session_id, rest[0] if rest else ""))
        return found
