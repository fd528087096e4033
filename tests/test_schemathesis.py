"""Generated hostile input against the published OpenAPI schema (schemathesis).

Every operation gets hundreds of generated requests through a real HTTP server: none
may cause a server error, and every answer must match the schema (documented status,
content type and body shape). Path parameters are mostly real (existing boards and
users, so the calls reach validation instead of stopping at 404), keys are real (admin,
a key limited to one board, an unknown one), and bodies are both valid (positive) and
schema-violating (negative). Deeply nested JSON bodies are sent to every POST.
"""

from collections import Counter

import httpx
import pytest
import schemathesis
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from kombu import Connection
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from rankings.services import leaderboard_create
from scores.models import ApiKey, Score

pytestmark = pytest.mark.pipeline

# Per operation and generation mode; about 1,700 calls in all (a few minutes on 2 cores).
CASES = {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 100}
NESTED_CASES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
USERS = ["alice", "bob.9", "c:3", "d_4-x"]


# http.server's own limit on a request line: past it the test server answers 414 itself.
_TEST_SERVER_MAX_LINE = 65536


@pytest.fixture
def fuzz_world(transactional_db) -> dict[str, list[str]]:
    boards = [
        leaderboard_create(slug="fuzz", name="Fuzz", min_points=-1000),
        leaderboard_create(slug="fuzz-asc", name="Fuzz asc", order="asc", aggregation="best", top_n=5),
        leaderboard_create(slug="fuzz-last", name="Fuzz last", aggregation="last", max_points=100),
        leaderboard_create(slug="fuzz-daily", name="Fuzz daily", reset="daily", reset_timezone="Europe/Berlin"),
    ]
    for board in boards:
        for n, user_id in enumerate(USERS):
            Score.objects.create(
                user_id=user_id,
                leaderboard=board,
                period=board.current_period(),
                score=n * 10,
                sort_key=board.sort_key_of(n * 10),
                reached_at=timezone.now(),
            )
    keys = [
        ApiKey.generate(name="fuzz-admin", is_admin=True)[1],
        ApiKey.generate(name="fuzz-one", leaderboard=boards[0])[1],
        "lbk_unknown",
    ]
    return {"slugs": [b.slug for b in boards], "keys": keys}


def path_choices(operation, slugs: list[str]) -> list[dict[str, str] | None]:
    """Real path parameters for the operation, and None: schemathesis' own values."""
    names = {p.name for p in operation.path_parameters}
    if names == {"slug"}:
        return [{"slug": slug} for slug in slugs] + [None]
    if names == {"slug", "user_id"}:
        return [{"slug": slug, "user_id": user} for slug in slugs for user in USERS[:2]] + [None]
    return [None]


def test_it_answers_generated_requests_within_the_schema(live_server, fuzz_world, celery_workers):
    # The fuzzing's accepted requests send real tasks (an erasure, a board's cleanup): no
    # worker may run them meanwhile, or one could still hold its locks when this test's
    # database is flushed. They wait in their queues and find nothing left to do later.
    celery_workers.stop()
    # Driven by hand (not schemathesis' pytest plugin, which does not run on pytest 9).
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    calls: Counter = Counter()
    statuses: Counter = Counter()
    no_negative: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deleting a board (admin key) takes it from every later call: that operation goes last.
    operations.sort(key=lambda operation: operation.label == "DELETE /api/v1/leaderboards/{slug}/")
    for operation in operations:
        for mode, count in CASES.items():
            strategies = [
                operation.as_strategy(generation_mode=mode, path_parameters=params)
                for params in path_choices(operation, fuzz_world["slugs"])
            ]

            @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=st.one_of(strategies), key=st.sampled_from(fuzz_world["keys"]))
            def call(case, key: str) -> None:
                headers = {"Authorization": f"Bearer {key}"}
                response = case.call(headers=headers)
                calls[case.operation.label] += 1
                statuses[(case.operation.label, response.status_code)] += 1
                if response.status_code == 414 and len(response.request.url) > _TEST_SERVER_MAX_LINE:
                    # The test server (http.server) refuses a request line over 64 KiB before
                    # Django sees it: a long query of 4-byte characters, percent-encoded.
                    return
                case.validate_response(response, checks=CHECKS, headers=headers)

            try:
                call()
            except Unsatisfiable:
                # Nothing of this operation can be made invalid (fixed real path, no body or
                # query): negative mode has no case to send. The positive run covered it.
                assert mode is GenerationMode.NEGATIVE, operation.label
                no_negative.append(operation.label)

    admin = fuzz_world["keys"][0]
    # The fuzzing may have deleted the fuzz boards (DELETE with the admin key): a board of its own.
    leaderboard_create(slug="fuzz-nested", name="Fuzz nested")

    @settings(max_examples=NESTED_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        path=st.sampled_from(["/api/v1/leaderboards/", "/api/v1/leaderboards/fuzz-nested/scores"]),
        depth=st.integers(min_value=2_000, max_value=100_000),
        opener=st.sampled_from(["[", '{"events":[', '{"user_id":']),
    )
    def nested(path: str, depth: int, opener: str) -> None:
        closer = {"[": "]", '{"events":[': "]}", '{"user_id":': "}"}[opener]
        body = opener * depth + "1" + closer * depth
        response = httpx.post(
            live_server.url + path,
            content=body,
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code in (400, 413), (depth, response.status_code, response.text[:200])
        assert response.headers["content-type"].startswith("application/json")
        calls["nested bodies"] += 1

    nested()
    print(f"\n[schemathesis] cases per operation: {dict(calls)}; total {sum(calls.values())}")
    print(f"[schemathesis] statuses: {dict(sorted(statuses.items()))}")
    print(f"[schemathesis] operations without negative cases: {no_negative}")
    assert "POST /api/v1/leaderboards/{slug}/scores" not in no_negative
    # Every operation of the schema was called, and the nested bodies were sent.
    assert len(calls) == len(operations) + 1, sorted(calls)
    assert sum(calls.values()) >= 1400
    # Real boards: the score endpoint was exercised past the 404, both ways.
    scores = "POST /api/v1/leaderboards/{slug}/scores"
    assert statuses[(scores, 202)] > 0 and statuses[(scores, 400)] > 0, statuses
    # Accepted events stay queued (no worker runs here); nothing is meant to apply them.
    with Connection(django_settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in django_settings.CELERY_TASK_QUEUES:
            bound = queue.bind(channel)
            bound.declare()  # as the workers declare it (a fresh session has deleted them)
            bound.purge()
