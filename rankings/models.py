"""Leaderboards (a Citus reference table) and their published top-N (distributed by board)."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from rankings import periods
from rankings.ordering import to_micros
from scores.citus import citus_sequential_modify

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The one period of a board that never resets; resetting boards have one per day, ISO
# week or month (rankings.periods), in the same score table, whose key carries the period.
ALL_TIME = periods.ALL_TIME


class Order(models.TextChoices):
    DESC = "desc", "higher is better"
    ASC = "asc", "lower is better"


class Reset(models.TextChoices):
    NEVER = periods.NEVER, "never"
    DAILY = periods.DAILY, "daily"
    WEEKLY = periods.WEEKLY, "weekly (ISO weeks, from Monday)"
    MONTHLY = periods.MONTHLY, "monthly"
    MANUAL = periods.MANUAL, "manual (versions v1, v2, … by POST …/reset)"


def validate_timezone(name: str) -> None:
    if name not in periods.timezone_names():
        raise ValidationError(f"'{name}' is not an IANA time zone name (e.g. 'UTC', 'Europe/Berlin').")


class Aggregation(models.TextChoices):
    SUM = "sum", "sum of points"
    BEST = "best", "best single value"
    LAST = "last", "latest accepted value"


# user_id and event_id: 1-64 of A-Z a-z 0-9 _ - . :
id_validator = RegexValidator(r"^[A-Za-z0-9_.:-]{1,64}\Z", "Use 1-64 of A-Z, a-z, 0-9, '_', '-', '.', ':'.")
slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}\Z", "Use 1-64 of a-z, 0-9, '_' and '-'.")


class LeaderboardQuerySet(models.QuerySet):
    def delete(self) -> tuple[int, dict[str, int]]:
        # The admin's bulk delete: see Leaderboard.delete.
        with transaction.atomic(using=self.db):
            citus_sequential_modify(self.db)
            return super().delete()


class Leaderboard(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    order = models.CharField(max_length=4, choices=Order.choices, default=Order.DESC)
    aggregation = models.CharField(max_length=4, choices=Aggregation.choices, default=Aggregation.SUM)
    top_n = models.PositiveSmallIntegerField(default=100, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    min_points = models.BigIntegerField(default=0)
    max_points = models.BigIntegerField(default=10**12)
    created_at = models.DateTimeField(auto_now_add=True)
    # Periods: when the board starts afresh, in which time zone, and how many past periods
    # stay readable. Fixed once the board exists, like the ranking fields.
    reset = models.CharField(max_length=7, choices=Reset.choices, default=Reset.NEVER, db_default=Reset.NEVER)
    reset_timezone = models.CharField(
        max_length=64, default="UTC", db_default="UTC", validators=[validate_timezone], help_text="IANA name"
    )
    keep_periods = models.PositiveSmallIntegerField(
        default=12, db_default=12, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    # Set when an operator deletes the board: it leaves the API and ingest at once, and a
    # maintenance task removes its rows in chunks and its Redis keys (tasks.cleanup).
    deleting = models.BooleanField(default=False, db_default=False, editable=False)
    # A manual board's resets: the instants (µs, accepted-time clock, ascending) its
    # versions end at; version n+1 is the current one (rankings.periods).
    manual_resets = models.JSONField(default=list, blank=True, editable=False)

    objects = LeaderboardQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        # The admin's form; the API's serializers say the same.
        if self.min_points > self.max_points:
            raise ValidationError({"max_points": f"Must be at least min_points ({self.min_points})."})

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        # Scores, event ids and top-N rows go first (on every shard), then the board (a
        # reference table): on Citus that needs sequential mode for the whole transaction.
        using = using or "default"
        with transaction.atomic(using=using):
            citus_sequential_modify(using)
            return super().delete(using=using, keep_parents=keep_parents)

    def period_rule(self) -> periods.PeriodRule:
        if self.reset == Reset.MANUAL:
            origin = to_micros(self.created_at) if self.created_at else 0
            return periods.PeriodRule(self.reset, self.reset_timezone, tuple(self.manual_resets), origin)
        return periods.PeriodRule(self.reset, self.reset_timezone)

    def current_period(self) -> str:
        return self.period_of(periods.clock_us())

    def period_of(self, accepted_us: int) -> str:
        """The period an event accepted at this time counts in."""
        if self.reset == Reset.NEVER:
            return ALL_TIME
        # Ingest asks once per event and reads once per request: the last period found is
        # kept on this (per-process, memoized) board and answers while the instant is in it.
        if self.reset == Reset.MANUAL:
            # A version's end is a reset, known only from the row: no copy of it is kept.
            return periods.period_at(self.period_rule(), accepted_us).key
        last = getattr(self, "_last_period", None)
        if last is None or not (last.starts_us <= accepted_us < last.ends_us):
            last = self._last_period = periods.period_at(self.period_rule(), accepted_us)
        return last.key

    def sort_key_of(self, score: int) -> int:
        """The value an ascending index sorts by: the score itself, or its negation on desc boards."""
        return -score if self.order == Order.DESC else score


class TopN(models.Model):
    """The published top-N of one board and period, written by the merge root.

    ``entries`` is the whole ranked list, replaced in one write so readers never see a
    half-merged board; ``version`` grows with every write and orders the Redis copies.
    """

    leaderboard = models.ForeignKey(Leaderboard, on_delete=models.CASCADE, related_name="tops")
    period = models.CharField(max_length=32, default=ALL_TIME)
    entries = models.JSONField(default=list)
    version = models.BigIntegerField(default=0)
    as_of = models.DateTimeField(null=True, blank=True)
    # The period is over and this is its final top-N, rebuilt from the database
    # (rankings.period_upkeep); never set for a board's current period.
    closed = models.BooleanField(default=False, db_default=False)

    class Meta:
        verbose_name = "top-N"
        verbose_name_plural = "top-N tables"
        constraints = [models.UniqueConstraint(fields=["leaderboard", "period"], name="topn_board_period_uniq")]

    def __str__(self) -> str:
        return f"{self.leaderboard_id}/{self.period} v{self.version}"


@receiver(post_save, sender=Leaderboard)
@receiver(post_delete, sender=Leaderboard)
def boards_changed(sender: type[Leaderboard], **kwargs: object) -> None:
    """Every process's board memo must drop its copies (see rankings.board_versions)."""
    from rankings.board_versions import boards_version_bump_on_commit
    from rankings.selectors import cached_boards_forget

    cached_boards_forget()
    boards_version_bump_on_commit()


class HiddenUser(models.Model):
    """A user kept out of every public read of one board (all its periods), e.g. a cheater.

    Their events still apply, so unhiding shows them again exactly and at once. The rows
    here are the truth; Redis holds a copy per board (``redis_keys.hidden_key``) that keeps
    them out of the rank index. Small, and read by every ranking query of the board: a
    Citus reference table (its foreign key points at another reference table).
    """

    leaderboard = models.ForeignKey(Leaderboard, on_delete=models.CASCADE, related_name="hidden_users")
    # "C" like scores_score.user_id: the ranking queries compare the two columns.
    user_id = models.CharField(max_length=64, db_collation="C", validators=[id_validator])
    hidden_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "hidden user"
        constraints = [models.UniqueConstraint(fields=["leaderboard", "user_id"], name="hiddenuser_board_user_uniq")]

    def __str__(self) -> str:
        return f"{self.user_id} hidden on {self.leaderboard_id}"
