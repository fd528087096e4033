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
from tasks.messages import ProfileCopy

# One index update, newer version wins, keeping the index's checksum ("vsum", the sum of
# the versions it holds) in step atomically: the reconcile compares it, and ZCARD, with the
# database's sum(version) and count(*) to notice an index that went stale.
_APPLY_ONE = """
local function apply(idx, ver, stats, user, v, member)
  local held = redis.call('HGET', ver, user)
  if held then
    local sep = string.find(held, '|', 1, true)
    local old = tonumber(string.sub(held, 1, sep - 1))
    if old >= v then return end
    redis.call('ZREM', idx, string.sub(held, sep + 1))
    redis.call('HINCRBY', stats, 'vsum', v - old)
  else
    redis.call('HINCRBY', stats, 'vsum', v)
  end
  redis.call('ZADD', idx, 0, member)
  redis.call('HSET', ver, user, v .. '|' .. member)
end
"""

# KEYS: index, versions, stats, build, shadow index, shadow versions, shadow stats, hidden.
# ARGV: (user, version, member) triples. While a rebuild fills the shadow keys (its state
# exists), every update goes to both, so the shadow misses nothing that happens meanwhile.
# Users in the board's hidden set are skipped: the check is atomic with the write, so no
# hand-off can put back a user the hide script removed. One EXISTS per call, and a
# SISMEMBER per row only when the board hides someone: a board that hides nobody pays
# nothing more. A skipped row changes nothing, so the counters stay in step.
_APPLY_ROWS = (
    _APPLY_ONE
    + """
local mirror = redis.call('EXISTS', KEYS[4]) == 1
local hiding = redis.call('EXISTS', KEYS[8]) == 1
for i = 1, #ARGV, 3 do
  local user, v, member = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if not (hiding and redis.call('SISMEMBER', KEYS[8], user) == 1) then
    apply(KEYS[1], KEYS[2], KEYS[3], user, v, member)
    if mirror then apply(KEYS[5], KEYS[6], KEYS[7], user, v, member) end
  end
end
return 1
"""
)

# KEYS: shadow index, shadow versions, shadow stats, hidden. ARGV: triples. A rebuild's
# chunk; its rows were read before a hide may have committed, so hidden users are skipped
# here too (the hide script removed them from the shadow already).
_LOAD_ROWS = (
    _APPLY_ONE
    + """
local hiding = redis.call('EXISTS', KEYS[4]) == 1
for i = 1, #ARGV, 3 do
  if not (hiding and redis.call('SISMEMBER', KEYS[4], ARGV[i]) == 1) then
    apply(KEYS[1], KEYS[2], KEYS[3], ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2])
  end
end
return 1
"""
)

# KEYS: hidden, index, versions, stats, build, shadow index, shadow versions, shadow
# stats. ARGV: user. Adds the user to the board's hidden set and takes them out of one
# period's index (and of a rebuild's shadow), keeping the "vsum" counter in step, in one
# atomic step: from here on every update of the user is skipped. Returns 1 if the index
# held the user.
_REMOVE_USER = """
local function remove(idx, ver, stats, user)
  local held = redis.call('HGET', ver, user)
  if not held then return 0 end
  local sep = string.find(held, '|', 1, true)
  redis.call('ZREM', idx, string.sub(held, sep + 1))
  redis.call('HDEL', ver, user)
  redis.call('HINCRBY', stats, 'vsum', -tonumber(string.sub(held, 1, sep - 1)))
  return 1
end
redis.call('SADD', KEYS[1], ARGV[1])
local removed = remove(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[5]) == 1 then remove(KEYS[6], KEYS[7], KEYS[8], ARGV[1]) end
return removed
"""

# KEYS: index, versions, stats. ARGV: (user, seen, wanted) triples, "version|member" or ""
# for none. Sets a user's entry to the database's, only if it still holds what the check
# saw: an update that came in since is newer than the check and is kept.
_FORCE_ROWS = """
local fixed = 0
for i = 1, #ARGV, 3 do
  local user, seen, wanted = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local held = redis.call('HGET', KEYS[2], user) or ''
  if held == seen and held ~= wanted then
    if held ~= '' then
      local sep = string.find(held, '|', 1, true)
      redis.call('ZREM', KEYS[1], string.sub(held, sep + 1))
      redis.call('HINCRBY', KEYS[3], 'vsum', -tonumber(string.sub(held, 1, sep - 1)))
    end
    if wanted ~= '' then
      local sep = string.find(wanted, '|', 1, true)
      redis.call('ZADD', KEYS[1], 0, string.sub(wanted, sep + 1))
      redis.call('HSET', KEYS[2], user, wanted)
      redis.call('HINCRBY', KEYS[3], 'vsum', tonumber(string.sub(wanted, 1, sep - 1)))
    else
      redis.call('HDEL', KEYS[2], user)
    end
    fixed = fixed + 1
  end
end
return fixed
"""

# KEYS: hidden, profiles, profile order. ARGV: (user, stamp, version, fields) quads.
# Keeps the newer of two copies of a profile (stamp, then version), whatever order the
# ingest hand-offs arrive in; a hidden user's is skipped, like their index updates (an
# erasure or entry deletion in progress: a late hand-off must not bring it back; unhide
# loads it again from the database).
_APPLY_PROFILES = """
for i = 1, #ARGV, 4 do
  local user = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], user) == 0 then
    local stamp, version = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local held = redis.call('HGET', KEYS[3], user)
    local newer = true
    if held then
      local sep = string.find(held, ':', 1, true)
      local held_stamp, held_version = tonumber(string.sub(held, 1, sep - 1)), tonumber(string.sub(held, sep + 1))
      newer = stamp > held_stamp or (stamp == held_stamp and version > held_version)
    end
    if newer then
      redis.call('HSET', KEYS[2], user, ARGV[i + 3])
      redis.call('HSET', KEYS[3], user, ARGV[i + 1] .. ':' .. ARGV[i + 2])
    end
  end
end
return 0
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

# KEYS: building, build, shadow index, shadow versions, shadow stats.
# ARGV: token, ttl, total, chunk rows. Claims the rebuild for one worker ("building",
# a short TTL refreshed per chunk, so a dead rebuild frees it soon); a rebuild whose state
# survives its worker is resumed from its cursor, else a new one starts empty.
_CLAIM_BUILD = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  redis.call('HSET', KEYS[2], 'token', ARGV[1], 'cursor', '', 'done', 0, 'total', ARGV[3],
             'chunk_rows', ARGV[4], 'chunks', 0)
  return 'new'
end
redis.call('HSET', KEYS[2], 'token', ARGV[1])
return 'resumed'
"""

# KEYS: build, building. ARGV: token, cursor, rows, ttl. Records a loaded chunk, if the
# rebuild is still this worker's.
_ADVANCE_BUILD = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'cursor', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'done', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'chunks', 1)
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
return 1
"""

# KEYS: build, building, ready, index, versions, stats, shadow index, shadow versions,
# shadow stats, last build. ARGV: token, now. The shadow replaces the index at once.
_FINISH_BUILD = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
for i = 0, 2 do
  if redis.call('EXISTS', KEYS[7 + i]) == 1 then
    redis.call('RENAME', KEYS[7 + i], KEYS[4 + i])
  else
    redis.call('DEL', KEYS[4 + i])
  end
end
local state = redis.call('HMGET', KEYS[1], 'done', 'chunks')
redis.call('HSET', KEYS[10], 'rows', state[1], 'chunks', state[2], 'finished_at', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '1')
return 1
"""


def redis_client() -> Redis:
    return get_redis_connection("default")


_scripts: dict[str, Script] = {}


def keys_delete_matching(client: Redis, pattern: str) -> int:
    """Delete every key matching a SCAN pattern, 500 at a time (never KEYS: it blocks
    Redis for the whole keyspace); returns how many were deleted."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def run_script(client: Redis | Pipeline, lua: str, keys_: list[str], args: list[Any]) -> Any:
    """Run a Lua script with EVALSHA (loaded only when Redis lacks it); on a pipeline it
    is queued with the pipeline's other commands."""
    script = _scripts.get(lua)
    if script is None:
        script = _scripts[lua] = Script(None, lua.encode())  # bytes: no client needed for the SHA
    return script(keys=keys_, args=args, client=client)


def _board_tag(leaderboard_id: int, period: str) -> str:
    return f"{leaderboard_id}|{period}"


def _apply_keys(leaderboard_id: int, period: str) -> list[str]:
    return [
        keys.index_key(leaderboard_id, period),
        keys.versions_key(leaderboard_id, period),
        keys.stats_key(leaderboard_id, period),
        keys.build_key(leaderboard_id, period),
        keys.shadow_index_key(leaderboard_id, period),
        keys.shadow_versions_key(leaderboard_id, period),
        keys.shadow_stats_key(leaderboard_id, period),
    ]


def _triples(rows: list[Row], desc: bool) -> list[Any]:
    argv: list[Any] = []
    for row in rows:
        argv += [row.user_id, row.version, index_member(row, desc)]
    return argv


def index_apply(client: Redis | Pipeline, leaderboard_id: int, period: str, rows: list[Row], desc: bool) -> None:
    """Apply rows to the rank index and mark the board touched for the reconcile (on a
    pipeline: both go in its round trip)."""
    if not rows:
        return
    apply_keys = [*_apply_keys(leaderboard_id, period), keys.hidden_key(leaderboard_id)]
    run_script(client, _APPLY_ROWS, apply_keys, _triples(rows, desc))
    client.sadd(keys.touched_key(), _board_tag(leaderboard_id, period))


def index_remove_user(client: Redis | Pipeline, leaderboard_id: int, period: str, user_id: str) -> None:
    """Hide the user on the board (the set) and take them out of this period's index."""
    remove_keys = [keys.hidden_key(leaderboard_id), *_apply_keys(leaderboard_id, period)]
    run_script(client, _REMOVE_USER, remove_keys, [user_id])
    client.sadd(keys.touched_key(), _board_tag(leaderboard_id, period))


def profiles_apply(
    client: Redis | Pipeline, leaderboard_id: int, period: str, copies: list[tuple[str, ProfileCopy]]
) -> None:
    """Write these users' profile copies, each only over an older one."""
    if not copies:
        return
    argv: list[Any] = []
    for user_id, copy in copies:
        argv += [user_id, copy.stamp_us, copy.version, copy.fields]
    profile_keys = [
        keys.hidden_key(leaderboard_id),
        keys.profiles_key(leaderboard_id, period),
        keys.profile_order_key(leaderboard_id, period),
    ]
    run_script(client, _APPLY_PROFILES, profile_keys, argv)


def profiles_count(pipe: Pipeline, leaderboard_id: int, period: str) -> None:
    """Queue the number of profiles held (a read with none skips their lookup)."""
    pipe.hlen(keys.profiles_key(leaderboard_id, period))


def profiles_read(client: Redis, leaderboard_id: int, period: str, user_ids: list[str]) -> dict[str, bytes]:
    """The rendered fields of those users who have a profile."""
    if not user_ids:
        return {}
    found = client.hmget(keys.profiles_key(leaderboard_id, period), user_ids)
    return {user: fields for user, fields in zip(user_ids, found, strict=True) if fields is not None}


def profiles_remove(client: Redis | Pipeline, leaderboard_id: int, period: str, user_id: str) -> None:
    client.hdel(keys.profiles_key(leaderboard_id, period), user_id)
    client.hdel(keys.profile_order_key(leaderboard_id, period), user_id)


def hidden_add(client: Redis, leaderboard_id: int, user_ids: list[str]) -> None:
    if user_ids:
        client.sadd(keys.hidden_key(leaderboard_id), *user_ids)


def hidden_remove(client: Redis, leaderboard_id: int, user_ids: list[str]) -> None:
    if user_ids:
        client.srem(keys.hidden_key(leaderboard_id), *user_ids)


def hidden_members(client: Redis, leaderboard_id: int) -> set[str]:
    return {m.decode() for m in client.smembers(keys.hidden_key(leaderboard_id))}


# Set-aside partials kept per (board, period) for an operator to read.
ASIDE_KEPT = 100


def partial_set_aside(client: Redis, leaderboard_id: int, period: str, raw: bytes) -> None:
    """Keep a partial no root can read (the newest ``ASIDE_KEPT``), and count it."""
    pipe = client.pipeline(transaction=False)
    pipe.lpush(keys.aside_key(leaderboard_id, period), raw)
    pipe.ltrim(keys.aside_key(leaderboard_id, period), 0, ASIDE_KEPT - 1)
    pipe.hincrby(keys.asides_key(), _board_tag(leaderboard_id, period), 1)
    pipe.execute()


def partials_set_aside(client: Redis) -> dict[tuple[int, str], int]:
    """Partials set aside so far, per (board, period)."""
    counted = {}
    for tag, count in client.hgetall(keys.asides_key()).items():
        leaderboard_id, period = tag.decode().split("|", 1)
        counted[(int(leaderboard_id), period)] = int(count)
    return counted


def boards_touched_take(client: Redis, limit: int) -> list[tuple[int, str]]:
    """Take (and forget) up to ``limit`` boards touched since the last take."""
    taken = client.spop(keys.touched_key(), limit) or []
    boards = []
    for tag in taken:
        leaderboard_id, period = tag.decode().split("|", 1)
        boards.append((int(leaderboard_id), period))
    return boards


def boards_touch(client: Redis, boards: list[tuple[int, str]]) -> None:
    """Ask for another reconcile of these boards (a suspicion to confirm next time)."""
    if boards:
        client.sadd(keys.touched_key(), *(_board_tag(b, p) for b, p in boards))


def index_counters(client: Redis, leaderboard_id: int, period: str) -> tuple[int, int]:
    """(members, sum of versions) of the rank index."""
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.index_key(leaderboard_id, period))
    pipe.hget(keys.stats_key(leaderboard_id, period), "vsum")
    count, vsum = pipe.execute()
    return int(count), int(vsum or 0)


def index_held(client: Redis, leaderboard_id: int, period: str, user_ids: list[str]) -> list[str]:
    """Each user's "version|member" in the index ("" when absent)."""
    if not user_ids:
        return []
    held = client.hmget(keys.versions_key(leaderboard_id, period), user_ids)
    return [h.decode() if h is not None else "" for h in held]


def index_members_between(client: Redis, leaderboard_id: int, period: str, low: str, high: str) -> list[str]:
    """Members in a lex range ("-", "+", "(m", "[m" as ZRANGEBYLEX takes them)."""
    return [m.decode() for m in client.zrangebylex(keys.index_key(leaderboard_id, period), low, high)]


def index_force(client: Redis, leaderboard_id: int, period: str, fixes: list[tuple[str, str, str]]) -> int:
    """Set users' entries to the database's (user, seen, wanted); returns how many changed."""
    if not fixes:
        return 0
    argv = [part for fix in fixes for part in fix]
    index_keys = _apply_keys(leaderboard_id, period)[:3]
    return int(run_script(client, _FORCE_ROWS, index_keys, argv))


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


def index_build_claim(
    client: Redis, leaderboard_id: int, period: str, ttl_seconds: int, total: int, chunk_rows: int
) -> tuple[str, str] | None:
    """Claim the board's rebuild: (token, "new" | "resumed"), or None while another
    worker holds it (it refreshes its claim every chunk)."""
    token = secrets.token_hex(8)
    claim_keys = [
        keys.building_key(leaderboard_id, period),
        keys.build_key(leaderboard_id, period),
        *_apply_keys(leaderboard_id, period)[4:],
    ]
    status = run_script(client, _CLAIM_BUILD, claim_keys, [token, ttl_seconds, total, chunk_rows])
    return (token, status.decode()) if status else None


def index_build_state(client: Redis, leaderboard_id: int, period: str) -> dict[str, str] | None:
    """A rebuild's state (token, cursor, done, total, chunk_rows, chunks); None if none runs."""
    state = client.hgetall(keys.build_key(leaderboard_id, period))
    return {k.decode(): v.decode() for k, v in state.items()} or None


def index_build_last(client: Redis, leaderboard_id: int, period: str) -> dict[str, str] | None:
    state = client.hgetall(keys.build_last_key(leaderboard_id, period))
    return {k.decode(): v.decode() for k, v in state.items()} or None


def index_build_active(client: Redis, leaderboard_id: int, period: str) -> bool:
    """Whether a worker holds the rebuild now (its claim has not expired)."""
    return bool(client.exists(keys.building_key(leaderboard_id, period)))


def index_build_load(client: Redis, leaderboard_id: int, period: str, rows: list[Row], desc: bool) -> None:
    if rows:
        load_keys = [*_apply_keys(leaderboard_id, period)[4:], keys.hidden_key(leaderboard_id)]
        run_script(client, _LOAD_ROWS, load_keys, _triples(rows, desc))


def index_build_advance(
    client: Redis, leaderboard_id: int, period: str, token: str, cursor: str, rows: int, ttl_seconds: int
) -> bool:
    build_keys = [keys.build_key(leaderboard_id, period), keys.building_key(leaderboard_id, period)]
    return bool(run_script(client, _ADVANCE_BUILD, build_keys, [token, cursor, rows, ttl_seconds]))


def index_build_finish(client: Redis, leaderboard_id: int, period: str, token: str, now: float) -> bool:
    """Swap the rebuilt shadow in for the index and mark it complete (if still ours)."""
    build_keys = [
        keys.build_key(leaderboard_id, period),
        keys.building_key(leaderboard_id, period),
        keys.ready_key(leaderboard_id, period),
        *_apply_keys(leaderboard_id, period)[:3],
        *_apply_keys(leaderboard_id, period)[4:],
        keys.build_last_key(leaderboard_id, period),
    ]
    return bool(run_script(client, _FINISH_BUILD, build_keys, [token, now]))


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
    entries: list[bytes]  # rendered JSON, rank order, without the profile fields
    # Profiles held for the period, or None when they may be incomplete (the rank index,
    # whose rebuild loads them, is not ready): then the reader takes them elsewhere.
    profiles: int | None = None


_entry_decoder = msgspec.json.Decoder(RankedEntry)


def entry_user_id(entry: bytes) -> str:
    return _entry_decoder.decode(entry).user_id


def top_read(client: Redis, leaderboard_id: int, period: str, limit: int = 1000) -> CachedTop | None:
    """The first ``limit`` entries of the cached top-N, with the number of profiles held,
    in one round trip; None when cold."""
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.top_key(leaderboard_id, period), _TOP_FIELDS[: 2 + limit])
    pipe.exists(keys.ready_key(leaderboard_id, period))
    profiles_count(pipe, leaderboard_id, period)
    (version, as_of, *entries), ready, profiles = pipe.execute()
    if version is None:
        return None
    # Past the end of a shorter list HMGET answers nil.
    end = entries.index(None) if None in entries else len(entries)
    return CachedTop(int(version), int(as_of), entries[:end], int(profiles) if ready else None)


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
        keys.stats_key(leaderboard_id, period),
        keys.build_key(leaderboard_id, period),
        keys.shadow_index_key(leaderboard_id, period),
        keys.shadow_versions_key(leaderboard_id, period),
        keys.shadow_stats_key(leaderboard_id, period),
        keys.verify_cursor_key(leaderboard_id, period),
        keys.suspect_key(leaderboard_id, period),
        keys.pending_key(leaderboard_id, period),
        keys.rounds_key(leaderboard_id, period),
        keys.root_due_key(leaderboard_id, period),
    )
