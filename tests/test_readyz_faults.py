"""/readyz while the broker is down: 503 naming it, then 200 again once it is back.

Stops and starts the machine's RabbitMQ application (``rabbitmqctl stop_app``): run it
alone, like tests/test_faults.py, never beside another test run.
"""

import subprocess

import pytest

from operations.health import readiness_forget
from tests.checks import broker_connections_renew, eventually
from tests.conftest import Workers

pytestmark = [pytest.mark.faults, pytest.mark.pipeline]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120)


def readyz(client) -> tuple[int, dict]:
    readiness_forget()  # a check, not this process's answer of the last second
    response = client.get("/readyz")
    return response.status_code, response.json()


@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_is_unready_while_the_broker_is_stopped_and_ready_after(client, worker: Workers):
    status, body = readyz(client)
    assert status == 200, body

    rabbitmqctl("stop_app")
    try:
        status, body = readyz(client)
        assert status == 503
        assert "broker" in body["failed"]
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
        # The kind of failure, never its text (hosts, ports, users go to the log).
        assert body["checks"]["broker"].startswith("error: ")
        assert "127.0.0.1" not in str(body) and "5672" not in str(body) and "guest" not in str(body)
    finally:
        rabbitmqctl("start_app")

    def ready_again() -> None:
        status, body = readyz(client)
        # The worker reconnects by itself and consumes its queues again.
        assert status == 200, body

    eventually(ready_again, timeout=120, interval=1)
    broker_connections_renew()
