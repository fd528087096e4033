"""The alert rules (docker/prometheus/alerts.yml) against the real /metrics: promtool checks
every rule, and evaluates the dead-letter alert on series scraped while real letters wait
in RabbitMQ's dead-letter queue; ``manage.py requeue_dead_letters`` then moves all of them
back, and a real worker applies their events."""

import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from leaderboard_project.celery import app as celery_app
from operations.broker import dead_queue_name, ingest_queue_names
from scores.models import Score
from scores.services import now_micros
from tasks.messages import ScoreEvent, ingest_batch_payload
from tasks.queues import APPLY_EVENTS_TASK
from tests.checks import eventually
from tests.test_operations import depth, no_workers  # noqa: F401 - a fixture

RULES = Path(__file__).resolve().parent.parent / "docker" / "prometheus" / "alerts.yml"
# More than the 100 letters one broker channel takes: "all" must mean all.
LETTERS = 250


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_every_alert_rule_is_valid():
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def _dead_letter_depths(client) -> dict[str, float]:
    """``leaderboard_queue_messages`` of the dead-letter queue, as /metrics exposes it."""
    text = client.get("/metrics").content.decode()
    return {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "leaderboard_queue_messages"
        for sample in family.samples
        if sample.labels["queue"] == dead_queue_name()
    }


def _alerts_at(tmp_path: Path, depths: dict[str, float]) -> subprocess.CompletedProcess:
    """promtool's unit test: the scraped value held for 3 minutes; after 2 the dead-letter
    alert must be firing with it when it is above 0, and silent when it is 0."""
    ((queue, value),) = depths.items()
    expected = (
        [
            {
                "exp_labels": {"severity": "ticket", "queue": queue},
                "exp_annotations": {
                    "summary": f"{value:g} dead letters in {queue}: peek them on /admin/pipeline/, fix the cause, "
                    "then requeue all (manage.py requeue_dead_letters)"
                },
            }
        ]
        if value > 0
        else []
    )
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'leaderboard_queue_messages{{queue="{queue}"}}', "values": f"{value:g}x3"},
                    {"series": "leaderboard_broker_up", "values": "1x3"},
                ],
                "alert_rule_test": [{"eval_time": "2m", "alertname": "LeaderboardDeadLetters", "exp_alerts": expected}],
            }
        ],
    }
    path = tmp_path / "dead_letters_test.yml"
    path.write_text(yaml.safe_dump(test))
    return _promtool("test", "rules", str(path))


def _dead_letter_events(queue: str, events: list[ScoreEvent]) -> None:
    """Publish one ingest message per event to ``queue`` and reject each, as a worker does
    with a message that fails for good: RabbitMQ dead-letters it with a real x-death."""
    for event in events:
        celery_app.send_task(APPLY_EVENTS_TASK, args=[ingest_batch_payload([event])], queue=queue)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        rejected = 0
        for _ in range(100 * len(events)):
            message = channel.basic_get(queue=queue, no_ack=False)
            if message is None:
                continue
            channel.basic_reject(message.delivery_tag, requeue=False)
            rejected += 1
            if rejected == len(events):
                break
    assert rejected == len(events)


@pytest.mark.pipeline
def test_dead_letters_alert_then_all_of_them_requeue_and_apply(
    no_workers,  # noqa: F811 - the fixture imported above
    celery_workers,
    transactional_db,
    make_board,
    client,
    tmp_path,
    settings,
):
    settings.LEADERBOARD_METRICS_PUBLIC = True
    board = make_board(slug="letters")
    queue = ingest_queue_names()[0]
    events = [ScoreEvent(board.id, f"u{n}", n, f"e{n}", now_micros()) for n in range(LETTERS)]
    _dead_letter_events(queue, events)
    eventually(lambda: _equal(depth(dead_queue_name()), LETTERS), timeout=10)

    depths = _dead_letter_depths(client)
    assert depths == {dead_queue_name(): LETTERS}
    fired = _alerts_at(tmp_path, depths)
    assert fired.returncode == 0, fired.stdout + fired.stderr

    # The cause is fixed (here: nothing was wrong with them); the operator requeues all.
    call_command("requeue_dead_letters")
    assert depth(dead_queue_name()) == 0
    assert depth(queue) == LETTERS
    cleared = _alerts_at(tmp_path, _dead_letter_depths(client))
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr

    celery_workers.start("merge_tree")
    try:
        eventually(lambda: _equal(Score.objects.filter(leaderboard=board).count(), LETTERS), timeout=60)
        assert sorted(Score.objects.filter(leaderboard=board).values_list("score", flat=True)) == list(range(LETTERS))
    finally:
        celery_workers.stop()


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
