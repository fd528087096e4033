"""Redis side of the read path: the rank index (every user of a board) and the top-N copy.

The rank index is a sorted set whose members encode the rank order (see
``ordering.index_member``) plus a hash ``user -> "version|member"``. Updates carry the
score row's version and are applied only when newer, so they commute: redelivered,
reordered or rebuilt updates all end in the same index. A ``ready`` flag says the index
holds every user; without it (Redis flushed or new) readers use the database and a
rebuild is started.
"""

import secrets
from collections.abc import Iterable
from typing import Any, NamedTuple

import msgspec
from django_redis import get_redis_connection
from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

from rankings import redis_keys as keys
from rankings.ordering import Row, index_member

_APPLY_ROWS = """
for i = 1, #ARGV, 3 do
  local user, ver, member = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local held = redis.call('HGET', KEYS[2], user)
  local newer = true
  if held then
    local sep = string.find(held, '|', 1, true)
    if tonumber(string.sub(held, 1, sep - 1)) >= ver then
      newer = false
    else
      redis.call('ZREM', KEYS[1], string.sub(held, sep + 1))
    end
  end
  if newer then
    redis.call('ZADD', KEYS[1], 0, member)
    redis.call('HSET', KEYS[2], user, ver .. '|' .. member)
  end
end
return 1
"""

# KEYS: index, versions, ready. ARGV: user, around.
# Returns false when the index is not ready, {total} when the user is absent, else
# {total, rank0, first0, members...}.
_READ_RANK = """
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
local total = redis.call('ZCARD', KEYS[1])
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return {total} end
local member = string.sub(held, string.find(held, '|', 1, true) + 1)
local rank = redis.call('ZRANK', KEYS[1], member)
if not rank then return {total} end
local around = tonumber(ARGV[2])
local first = math.max(0, rank - around)
local out = {total, rank, first}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], first, rank + around)) do out[#out + 1] = m end
return out
"""

# KEYS: top hash. ARGV: version, as_of (µs), then the rendered JSON of each entry in rank
# order. Writes only a newer version, replacing the hash whole (a Lua script is atomic, so
# a reader never sees two versions mixed). Fields: "version", "as_of", and "1".."N" with
# each rank's JSON: any ?limit= is then one HMGET, served without decoding anything.
# "version" is a new field name: a hash left in the older one-blob format ("v", "data")
# counts as cold and is replaced by the next write whatever its version.
_WRITE_TOP = """
local held = redis.call('HGET', KEYS[1], 'version')
if held and tonumber(held) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
local fields = {'version', ARGV[1], 'as_of', ARGV[2]}
for i = 3, #ARGV do
  fields[#fields + 1] = tostring(i - 2)
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
"""

# KEYS: index, ready. ARGV: first0, last0. false when the index is not ready, else
# {total, members...} of that rank range (empty past the end).
_READ_RANGE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local out = {redis.call('ZCARD', KEYS[1])}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])) do out[#out + 1] = m end
return out
"""

# KEYS: index, versions, ready. ARGV: user ids. false when the index is not ready, else
# {rank0, member, rank0, member, ...} of the users found (each one ZRANK, O(log n)).
_READ_RANKS_OF = """
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
local out = {}
local held = redis.call('HMGET', KEYS[2], unpack(ARGV))
for i = 1, #ARGV do
  if held[i] then
    local member = string.sub(held[i], string.find(held[i], '|', 1, true) + 1)
    local rank = redis.call('ZRANK', KEYS[1], member)
    if rank then
      out[#out + 1] = rank
      out[#out + 1] = member
    end
  end
end
return out
"""

# KEYS: building, ready. ARGV: token. Marks the index complete if no flush came between.
_FINISH_BUILD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], '1')
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def redis_client() -> Redis:
    return get_redis_connection("default")


_scripts: dict[str, Script] = {}


def run_script(client: Redis | Pipeline, lua: str, keys_: list[str], args: list[Any]) -> Any:
    """Run a Lua script with EVALSHA (loaded only when Redis lacks it); on a pipeline it
    is queued with the pipeline's other commands."""
    script = _scripts.get(lua)
    if script is None:
        script = _scripts[lua] = Script(None, lua.encode())  # bytes: no client needed for the SHA
    return script(keys=keys_, args=args, client=client)


def index_apply(client: Redis | Pipeline, leaderboard_id: int, period: str, rows: list[Row], desc: bool) -> None:
    if not rows:
        return
    argv: list[Any] = []
    for row in rows:
        argv += [row.user_id, row.version, index_member(row, desc)]
    index_keys = [keys.index_key(leaderboard_id, period), keys.versions_key(leaderboard_id, period)]
    run_script(client, _APPLY_ROWS, index_keys, argv)


def index_read_rank(client: Redis, leaderboard_id: int, period: str, user_id: str, around: int) -> list | None:
    index_keys = [
        keys.index_key(leaderboard_id, period),
        keys.versions_key(leaderboard_id, period),
        keys.ready_key(leaderboard_id, period),
    ]
    return run_script(client, _READ_RANK, index_keys, [user_id, around])


def index_is_ready(client: Redis, leaderboard_id: int, period: str) -> bool:
    return bool(client.exists(keys.ready_key(leaderboard_id, period)))


def index_head(client: Redis, leaderboard_id: int, period: str, limit: int) -> list[str] | None:
    """The first ``limit`` members in one round trip; None when the index is not complete."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.ready_key(leaderboard_id, period))
    pipe.zrange(keys.index_key(leaderboard_id, period), 0, limit - 1)
    ready, members = pipe.execute()
    return [m.decode() for m in members] if ready else None


def index_mark_ready(client: Redis, leaderboard_id: int, period: str) -> None:
    client.set(keys.ready_key(leaderboard_id, period), "1")


def index_build_start(client: Redis, leaderboard_id: int, period: str, ttl_seconds: int) -> str | None:
    """Claim the rebuild; None when another rebuild holds it (it owns the flag until done)."""
    token = secrets.token_hex(8)
    if client.set(keys.building_key(leaderboard_id, period), token, nx=True, ex=ttl_seconds):
        return token
    return None


def index_build_finish(client: Redis, leaderboard_id: int, period: str, token: str) -> bool:
    build_keys = [keys.building_key(leaderboard_id, period), keys.ready_key(leaderboard_id, period)]
    return bool(run_script(client, _FINISH_BUILD, build_keys, [token]))


class RankedEntry(msgspec.Struct, frozen=True):
    """One ranked line as the API renders it: ``{"rank":1,"user_id":"a","score":5}``."""

    rank: int
    user_id: str
    score: int


_json = msgspec.json.Encoder()


def entries_json(pairs: Iterable[tuple[str, int]], first_rank: int = 1) -> list[bytes]:
    """Each (user_id, score), in rank order, rendered as the JSON of its ranked entry."""
    return [_json.encode(RankedEntry(first_rank + i, user_id, score)) for i, (user_id, score) in enumerate(pairs)]


def top_write(client: Redis, leaderboard_id: int, period: str, version: int, as_of_us: int, rows: list[Row]) -> bool:
    """Store a top-N version rendered: one JSON object per rank, so reads never encode."""
    entries = entries_json((row.user_id, row.score) for row in rows)
    return bool(run_script(client, _WRITE_TOP, [keys.top_key(leaderboard_id, period)], [version, as_of_us, *entries]))


# HMGET's field names for any limit, made once: "version", "as_of", "1", "2", ...
_TOP_FIELDS = ["version", "as_of", *(str(rank) for rank in range(1, 1001))]


class CachedTop(NamedTuple):
    version: int
    as_of_us: int
    entries: list[bytes]  # rendered JSON, rank order


def top_read(client: Redis, leaderboard_id: int, period: str, limit: int = 1000) -> CachedTop | None:
    """The first ``limit`` entries of the cached top-N in one round trip; None when cold."""
    version, as_of, *entries = client.hmget(keys.top_key(leaderboard_id, period), _TOP_FIELDS[: 2 + limit])
    if version is None:
        return None
    # Past the end of a shorter list HMGET answers nil.
    end = entries.index(None) if None in entries else len(entries)
    return CachedTop(int(version), int(as_of), entries[:end])


def index_read_range(client: Redis, leaderboard_id: int, period: str, first0: int, count: int) -> list | None:
    """[total, members...] of ranks first0 .. first0 + count - 1 (0-based); None when not ready."""
    index_keys = [keys.index_key(leaderboard_id, period), keys.ready_key(leaderboard_id, period)]
    return run_script(client, _READ_RANGE, index_keys, [first0, first0 + count - 1])


def index_read_ranks_of(client: Redis, leaderboard_id: int, period: str, user_ids: list[str]) -> list | None:
    """[rank0, member, ...] of those users who are on the board; None when not ready."""
    index_keys = [
        keys.index_key(leaderboard_id, period),
        keys.versions_key(leaderboard_id, period),
        keys.ready_key(leaderboard_id, period),
    ]
    return run_script(client, _READ_RANKS_OF, index_keys, user_ids)


def index_reset(client: Redis, leaderboard_id: int, period: str) -> None:
    """Forget a board's rank index and top-N copy (before reloading it from scratch)."""
    client.delete(
        keys.index_key(leaderboard_id, period),
        keys.versions_key(leaderboard_id, period),
        keys.ready_key(leaderboard_id, period),
        keys.top_key(leaderboard_id, period),
        keys.building_key(leaderboard_id, period),
        keys.pending_key(leaderboard_id, period),
        keys.rounds_key(leaderboard_id, period),
        keys.root_due_key(leaderboard_id, period),
    )
