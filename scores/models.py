"""The hot tables, distributed by ``user_id`` on Citus, and the API keys (a reference table).

Every primary key and unique constraint on ``Score`` and ``ProcessedEvent`` includes
``user_id``, and both are colocated, so de-duplicating and applying one user's events is
a single-shard transaction.
"""

import hashlib
import secrets

from django.db import models

from rankings.models import ALL_TIME, Leaderboard


class Score(models.Model):
    # Django (and its admin) need one primary-key column; the database key is
    # (user_id, id), set by migration, because Citus wants the distribution column in it.
    id = models.BigAutoField(primary_key=True)
    # "C" collation: ties are broken by user_id in code-point order, as Redis and Python do.
    user_id = models.CharField(max_length=64, db_collation="C")
    # No index of its own: the ranking index starts with leaderboard_id, and every index
    # costs each upsert an entry (an update that moves sort_key is never HOT).
    leaderboard = models.ForeignKey(Leaderboard, on_delete=models.CASCADE, related_name="scores", db_index=False)
    period = models.CharField(max_length=32, default=ALL_TIME)
    score = models.BigIntegerField()
    # The score negated on desc boards, so one ascending index serves both orders.
    sort_key = models.BigIntegerField()
    # The accepted time (stamped by the web tier) of the event that set the score.
    reached_at = models.DateTimeField()
    # "last" boards: the event id that set the score, the tie-break of last-writer-wins
    # when two events carry the same accepted time.
    reached_by = models.CharField(max_length=80, default="", db_default="", blank=True)
    # Grows with every applied change; orders the rank-index updates in Redis.
    version = models.BigIntegerField(default=1)
    # "sum" boards: the exact total while it lies beyond ±(2^63 - 1) (``score`` then shows it
    # saturated); NULL while ``score`` is exact. Keeps saturation independent of batching.
    exact_total = models.DecimalField(max_digits=40, decimal_places=0, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id", "leaderboard", "period"], name="score_user_board_period_uniq")
        ]
        indexes = [
            models.Index(
                fields=["leaderboard", "period", "sort_key", "reached_at", "user_id"],
                name="score_ranking_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.leaderboard_id}/{self.period}={self.score}"


class ProcessedEvent(models.Model):
    """One applied event id: a redelivered or resent event meets its row and is dropped."""

    pk = models.CompositePrimaryKey("user_id", "leaderboard_id", "event_id")
    user_id = models.CharField(max_length=64, db_collation="C")
    leaderboard = models.ForeignKey(Leaderboard, on_delete=models.CASCADE, related_name="+")
    # Client ids are 1-64 characters; ids the service makes start with "~" (never a client's).
    event_id = models.CharField(max_length=80)
    applied_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.event_id} of {self.user_id}@{self.leaderboard_id}"


class ErasedUser(models.Model):
    """A user erased on every board (``DELETE /api/v1/users/{id}``): the tombstone ingest
    checks, so that an event accepted before the erasure but applied after it (still in a
    queue) cannot bring the user back. Events accepted after ``erased_us`` count again.

    Distributed by user_id and colocated with the scores (the key is the user id): ingest
    reads it in the same single-shard transaction as the user's rows. Purged with the event
    ids past their retention window (``scores.maintenance``).
    """

    user_id = models.CharField(max_length=64, primary_key=True, db_collation="C")
    # The accepted-time clock of ScoreEvent.accepted_us (µs): events stamped at or before
    # it are dropped; later ones count.
    erased_us = models.BigIntegerField()
    requested_at = models.DateTimeField()
    # [[board id, period], ...] whose rows the task deleted and whose Redis index and
    # top-N it has yet to clean: kept in the row, in the delete's transaction, so a task
    # retried after a Redis failure still knows them (the rows are gone by then).
    pending = models.JSONField(default=list, blank=True)
    # Set when the background task is done; until then ingest waits with events of the user
    # accepted after erased_us (see scores.erasure).
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id} erased at {self.erased_us}"


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    # Only the hash is stored; the raw key is shown once, when it is made.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    leaderboard = models.ForeignKey(
        Leaderboard,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="Limit the key to this leaderboard; empty means any leaderboard.",
    )
    is_admin = models.BooleanField(default=False, help_text="May create leaderboards and write to all.")
    tenant = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text=(
            "Keys of one tenant share one fair share of the service under load. Empty: the key's "
            "leaderboard, or for a key of every leaderboard the key itself."
        ),
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def generate(
        cls, *, name: str, leaderboard: Leaderboard | None = None, is_admin: bool = False, tenant: str = ""
    ) -> tuple["ApiKey", str]:
        raw = "lbk_" + secrets.token_urlsafe(32)
        key = cls.objects.create(
            name=name,
            key_hash=hash_api_key(raw),
            prefix=raw[:12],
            leaderboard=leaderboard,
            is_admin=is_admin,
            tenant=tenant,
        )
        return key, raw

    @property
    def is_authenticated(self) -> bool:
        # DRF treats request.user as the principal; a key stands in for a user.
        return True

    @property
    def admission_tenant(self) -> str:
        """Who this key's events count for in admission's fair share (scores.admission)."""
        if self.tenant:
            return f"t:{self.tenant}"
        if self.leaderboard_id is not None:
            return f"board:{self.leaderboard_id}"
        return f"key:{self.pk}"

    def may_write(self, leaderboard: Leaderboard) -> bool:
        return self.is_admin or self.leaderboard_id is None or self.leaderboard_id == leaderboard.id


class DeletedEntry(models.Model):
    """One user's entry deleted on one board (``DELETE …/{slug}/users/{id}``): the same
    tombstone as ``ErasedUser``, for one board. Events of the user on that board accepted
    at or before ``deleted_us`` are dropped however late they are applied; later ones
    count afresh once the deletion finished. Distributed by user_id and colocated with the
    scores, read by ingest in the user's transaction; purged like the erasures.
    """

    pk = models.CompositePrimaryKey("user_id", "leaderboard_id")
    user_id = models.CharField(max_length=64, db_collation="C")
    # A plain id, not a foreign key: a board deleted meanwhile leaves its tombstones to
    # the purge, not to a cascade over every row.
    leaderboard_id = models.BigIntegerField()
    deleted_us = models.BigIntegerField()
    requested_at = models.DateTimeField()
    # Periods whose rows the task deleted and whose index and top-N are left to clean.
    pending = models.JSONField(default=list, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id} deleted from board {self.leaderboard_id} at {self.deleted_us}"


class EntryProfile(models.Model):
    """Who an entry is: the ``display_name`` and ``metadata`` of one (board, period, user),
    each the value of the latest accepted event that carried it (last-writer-wins on
    (accepted time, event_id), field by field).

    A table of its own, written only by events that carry a field: the score row, its
    ranking index and the Redis rank index stay as lean as without profiles. Distributed
    by user_id and colocated with the scores, so ingest writes it in the user's
    single-shard transaction. ``leaderboard_id`` is a plain id, as for the tombstones: a
    deleted board's rows go with its chunked delete.
    """

    pk = models.CompositePrimaryKey("user_id", "leaderboard_id", "period")
    user_id = models.CharField(max_length=64, db_collation="C")
    leaderboard_id = models.BigIntegerField()
    period = models.CharField(max_length=32)
    # NULL until an event carries one: the API's null (a display name is never empty).
    display_name = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # The (accepted µs, event id) of the event that set each field: its last-writer-wins key.
    display_name_us = models.BigIntegerField(null=True, blank=True)
    display_name_event = models.CharField(max_length=80, default="", blank=True)
    metadata = models.JSONField(null=True, blank=True)
    metadata_us = models.BigIntegerField(null=True, blank=True)
    metadata_event = models.CharField(max_length=80, default="", blank=True)
    # Grows with every change; with the newest stamp it orders the Redis copies' updates.
    version = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.user_id}@{self.leaderboard_id}/{self.period}: {self.display_name!r}"
