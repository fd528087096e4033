"""Redis side of the merge levels: level 0 of each board, its rounds and its root window.

After an ingest commit, each board's partial is pushed onto the board's *pending* list
(level 0) in the same round trip that updates the board's rank index. The push also
tries to claim the board's *root-due* flag: the claimer schedules the board's root one
window later, everyone else only pushes. The flag is held until that root starts (its
round claim deletes it), so a board has one root pending at most, however long the rank
tier takes to get to it, and its roots run at least a window apart, whatever the ingest
rate. A root that never starts (its message lost) lets go of the flag after
``LEADERBOARD_ROOT_CLAIM_TTL_MS``; then a push or the sweeper claims it again. A claimer
that dies between its claim and the root's publish leaves its ingest message
unacknowledged: the broker redelivers it, and a redelivered batch claims its boards'
roots over any held claim and schedules them (one root too many at worst: it finds
little or nothing pending), so the board does not wait for the TTL and the sweeper.

The root *claims a round*: it renames the pending list to a list of its own (a token),
recorded in the board's *rounds* set with the claim time. Partials pushed meanwhile go to
a fresh pending list and the next round. A round is deleted only after its result was
published; a round whose root died (kill -9, a chord that never completed) stays in the
set and is taken over by a later root once it is older than the takeover delay, so no
partial is lost between the ingest commit and the root that includes it. Merging is
idempotent (newest version per user), so a round merged twice does no harm.
"""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis
from redis.client import Pipeline

from rankings import cache
from rankings import redis_keys as keys
from rankings.ordering import Row
from tasks.messages import ProfileCopy

# KEYS: pending, root-due (one board's slot: a Redis Cluster runs a script on one slot).
# ARGV: partial (or ""), claim TTL ms, "1" to claim even over a held claim. Returns 1 when
# this push claimed the next root (the caller schedules it). The board joins the
# sweeper's set (a global key, another slot) in a command of its own, sent before this
# one on the same connection.
_PUSH = """
if ARGV[1] ~= '' then
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 1
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS: pending, rounds, this round's list, root-due. ARGV: token, now ms, takeover ms.
# Returns the tokens of the rounds this root takes: its own (if anything was pending)
# and those whose root has not finished after the takeover delay. The root has started:
# the next push may claim the next root.
_CLAIM = """
redis.call('DEL', KEYS[4])
local taken = {}
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
for _, token in ipairs(stale) do
  redis.call('ZADD', KEYS[2], ARGV[2], token)
  taken[#taken + 1] = token
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  taken[#taken + 1] = ARGV[1]
end
return taken
"""


@dataclass(frozen=True)
class BoardPush:
    """What one ingest commit hands to one board: rows for its rank index and, with the
    merge_tree strategy, its encoded partial for level 0."""

    leaderboard_id: int
    period: str
    desc: bool
    rows: list[Row]
    partial: bytes | None
    # (user, profile) of rows whose display name or metadata the batch carried.
    profiles: list[tuple[str, ProfileCopy]] = field(default_factory=list)


def _board_key(leaderboard_id: int, period: str) -> str:
    return f"{leaderboard_id}:{period}"


def boards_push(
    client: Redis,
    pushes: list[BoardPush],
    claim_ttl_ms: int,
    also: Callable[[Pipeline], None] | None = None,
    *,
    claim_anyway: bool = False,
) -> list[BoardPush]:
    """Feed the rank indexes, push the partials, claim the roots: one round trip for all
    boards, carrying the caller's own commands too (``also``: the ingest's counters).
    Returns the pushes whose board's root the caller must schedule: every one with
    ``claim_anyway``, whoever holds the claim."""
    pipe = client.pipeline(transaction=False)
    if also is not None:
        also(pipe)
    claim_results = []
    for push in pushes:
        # Before the partial: a top-N that includes a user finds their profile.
        cache.profiles_apply(pipe, push.leaderboard_id, push.period, push.profiles)
        if push.rows:
            cache.index_apply(pipe, push.leaderboard_id, push.period, push.rows, push.desc)
        if push.partial:
            # Before the partial: the sweeper may know of a board with nothing pending
            # (it forgets it), never miss one whose partials wait.
            pipe.sadd(keys.boards_with_rounds_key(), _board_key(push.leaderboard_id, push.period))
        push_keys = [
            keys.pending_key(push.leaderboard_id, push.period),
            keys.root_due_key(push.leaderboard_id, push.period),
        ]
        cache.run_script(pipe, _PUSH, push_keys, [push.partial or b"", claim_ttl_ms, int(claim_anyway)])
        claim_results.append(len(pipe) - 1)
    results = pipe.execute()
    return [push for push, at in zip(pushes, claim_results, strict=True) if results[at] == 1]


def root_claim(client: Redis, leaderboard_id: int, period: str, claim_ttl_ms: int) -> bool:
    """Claim the board's next root without pushing (a finished round with more pending,
    or the sweeper): True when the caller must schedule it."""
    due = keys.root_due_key(leaderboard_id, period)
    return bool(client.set(due, "1", nx=True, px=claim_ttl_ms))


def root_claim_release(client: Redis, leaderboard_id: int, period: str) -> None:
    """Let go of a claim whose root could not be scheduled, so the next push claims it."""
    client.delete(keys.root_due_key(leaderboard_id, period))


def round_claim(client: Redis, leaderboard_id: int, period: str, takeover_ms: int) -> list[str]:
    token = secrets.token_hex(8)
    claim_keys = [
        keys.pending_key(leaderboard_id, period),
        keys.rounds_key(leaderboard_id, period),
        keys.inflight_key(leaderboard_id, period, token),
        keys.root_due_key(leaderboard_id, period),
    ]
    taken = cache.run_script(client, _CLAIM, claim_keys, [token, int(time.time() * 1000), takeover_ms])
    return [t.decode() if isinstance(t, bytes) else t for t in taken]


@dataclass(frozen=True)
class Span:
    """A slice of one round's list: the unit a level-1 merge reads."""

    token: str
    start: int
    stop: int  # inclusive, as LRANGE takes it


def round_spans(client: Redis, leaderboard_id: int, period: str, tokens: list[str], fan_in: int) -> list[Span]:
    """Cut the rounds' lists into spans of at most ``fan_in`` partials."""
    pipe = client.pipeline(transaction=False)
    for token in tokens:
        pipe.llen(keys.inflight_key(leaderboard_id, period, token))
    spans = []
    for token, length in zip(tokens, pipe.execute(), strict=True):
        spans += [Span(token, start, min(start + fan_in, length) - 1) for start in range(0, length, fan_in)]
    return spans


def spans_read(client: Redis, leaderboard_id: int, period: str, spans: list[Span]) -> list[bytes]:
    """The encoded partials of these spans (a span whose round is already gone reads
    empty: whoever deleted it had published it)."""
    pipe = client.pipeline(transaction=False)
    for span in spans:
        pipe.lrange(keys.inflight_key(leaderboard_id, period, span.token), span.start, span.stop)
    return [raw for found in pipe.execute() for raw in found]


def round_finish(client: Redis, leaderboard_id: int, period: str, tokens: list[str]) -> bool:
    """Forget rounds whose result is published; True when partials are pending again."""
    pipe = client.pipeline(transaction=True)
    if tokens:
        pipe.delete(*(keys.inflight_key(leaderboard_id, period, token) for token in tokens))
        pipe.zrem(keys.rounds_key(leaderboard_id, period), *tokens)
    pipe.exists(keys.pending_key(leaderboard_id, period))
    return bool(pipe.execute()[-1])


def boards_with_rounds(client: Redis) -> list[tuple[int, str]]:
    found = []
    for member in client.smembers(keys.boards_with_rounds_key()):
        leaderboard_id, period = member.decode().split(":", 1)
        found.append((int(leaderboard_id), period))
    return sorted(found)


def board_rounds_state(client: Redis, leaderboard_id: int, period: str) -> tuple[bool, int]:
    """(partials pending?, rounds claimed and unfinished) for the sweeper."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.pending_key(leaderboard_id, period))
    pipe.zcard(keys.rounds_key(leaderboard_id, period))
    pending, rounds = pipe.execute()
    return bool(pending), int(rounds)


def board_rounds_forget_if_idle(client: Redis, leaderboard_id: int, period: str) -> bool:
    """Drop a board with nothing pending and no open round from the sweeper's set (its
    next push adds it again).

    The set is a global key and the board's keys live on the board's slot, so no script
    can check and remove at once on a Redis Cluster: the board is removed, then checked
    again, and put back when a partial arrived meanwhile (a push adds the board before it
    pushes its partial, so whatever it pushed is seen by the second check or re-adds it).
    """
    member = _board_key(leaderboard_id, period)
    if board_rounds_state(client, leaderboard_id, period) != (False, 0):
        return False
    client.srem(keys.boards_with_rounds_key(), member)
    if board_rounds_state(client, leaderboard_id, period) == (False, 0):
        return True
    client.sadd(keys.boards_with_rounds_key(), member)
    return False
