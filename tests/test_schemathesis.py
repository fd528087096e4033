"""Generated hostile input against the published OpenAPI schema (schemathesis).

Every operation gets hundreds of generated requests through a real HTTP server: none
may cause a server error, and every answer must match the schema (documented status,
content type and body shape).
"""

from collections import Counter

import pytest
import schemathesis
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from kombu import Connection
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from rankings.services import leaderboard_create
from scores.models import ApiKey

pytestmark = pytest.mark.pipeline

CASES_PER_OPERATION = 250
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzz_key(transactional_db) -> str:
    leaderboard_create(slug="fuzz", name="Fuzz", min_points=-1000)
    return ApiKey.generate(name="fuzz", is_admin=True)[1]


def test_it_answers_generated_requests_within_the_schema(live_server, fuzz_key):
    # Driven by hand (not schemathesis' pytest plugin, which does not run on pytest 9).
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    calls: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=CASES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def call(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)
            calls[case.operation.label] += 1

        call()
    print(f"\n[schemathesis] cases per operation: {dict(calls)}; total {sum(calls.values())}")
    assert len(calls) == 7  # six API v1 operations + GET .../{slug}/activity
    assert sum(calls.values()) >= 1000
    # Accepted events stay queued (no worker runs here); nothing is meant to apply them.
    with Connection(django_settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in django_settings.CELERY_TASK_QUEUES:
            channel.queue_purge(queue.name)
