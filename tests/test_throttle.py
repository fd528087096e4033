"""The per-key throttle's leases (scores.throttle) on the real Redis: the limit holds
exactly across processes and threads, however the budget is leased."""

import threading
import uuid

import pytest
from django_redis import get_redis_connection

from scores.throttle import KeyThrottle


@pytest.fixture
def rate(settings):
    def use(rate: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": rate}}

    return use


def a_key_id() -> int:
    # A key id no other test uses, with no window in Redis yet.
    key_id = uuid.uuid4().int % 10**12
    get_redis_connection("default").delete(f"lbtest:throttle:{key_id}")
    return key_id


def hammer(throttles: list[KeyThrottle], key_id: int, threads: int, takes: int) -> tuple[int, list[float]]:
    allowed, waits, lock = 0, [], threading.Lock()

    def run(throttle: KeyThrottle) -> None:
        nonlocal allowed
        for _ in range(takes):
            wait = throttle.wait_for(key_id)
            with lock:
                if wait is None:
                    allowed += 1
                else:
                    waits.append(wait)

    workers = [threading.Thread(target=run, args=(throttles[n % len(throttles)],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return allowed, waits


def test_it_lets_exactly_the_limit_through_two_processes_and_many_threads(rate):
    rate("1000/minute")  # leased 10 at a time
    key_id = a_key_id()
    allowed, waits = hammer([KeyThrottle(), KeyThrottle()], key_id, threads=40, takes=30)
    assert allowed == 1000
    assert len(waits) == 200
    assert all(0 < wait <= 60 for wait in waits)


def test_it_leases_one_request_at_a_time_under_a_small_limit(rate):
    rate("3/minute")
    key_id = a_key_id()
    first, second = KeyThrottle(), KeyThrottle()
    answers = [first.wait_for(key_id), second.wait_for(key_id), first.wait_for(key_id), second.wait_for(key_id)]
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and 0 < answers[3] <= 60


def test_it_keeps_each_keys_budget_apart(rate):
    rate("2/minute")
    one, other = a_key_id(), a_key_id()
    throttle = KeyThrottle()
    assert [throttle.wait_for(one) for _ in range(3)][2] is not None
    assert throttle.wait_for(other) is None
