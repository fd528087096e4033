"""/readyz while the broker is down: 503 naming it, then 200 again once it is back.

Stops and starts the machine's RabbitMQ application (``rabbitmqctl stop_app``): run it
alone, like tests/test_faults.py, never beside another test run.
"""

import subprocess

import pytest

from tests.checks import broker_connections_renew, eventually
from tests.conftest import Workers

pytestmark = [pytest.mark.faults, pytest.mark.pipeline]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120)


def readyz(client) -> tuple[int, dict]:
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
    finally:
        rabbitmqctl("start_app")

    def ready_again() -> None:
        status, body = readyz(client)
        # The worker reconnects by itself and consumes its queues again.
        assert status == 200, body

    eventually(ready_again, timeout=120, interval=1)
    broker_connections_renew()
