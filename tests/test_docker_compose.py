"""docker/compose.yml keeps its production-safe defaults and its distribution step.

No Docker engine runs here, so the file is checked as data: parsed YAML, and the
invariants a reviewer would look for (see docker/README.md, "What was checked").
"""

import re
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker" / "compose.yml"
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (compose()["services"][service].get("environment") or {}).items()}


def test_it_requires_every_secret_and_has_no_default_one():
    text = COMPOSE.read_text()
    required = set(REQUIRED.findall(text))
    assert {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD"} <= required
    for name in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        assert f"${{{name}:-" not in text, f"{name} has a default value"
    assert "change-me" not in text


def test_it_uses_no_guest_account_and_no_trust_authentication():
    text = COMPOSE.read_text()
    assert "guest" not in text
    assert "trust" not in re.sub(r"#.*", "", text)
    for node in ("coordinator", "worker1", "worker2"):
        node_env = env(node)
        assert node_env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
        assert node_env["PGPASSWORD"] == node_env["POSTGRES_PASSWORD"], "the nodes cannot reach each other"
    assert env("rabbitmq")["RABBITMQ_DEFAULT_USER"].startswith("${RABBITMQ_USER:?")
    assert "${RABBITMQ_USER:?" in env("web")["LEADERBOARD_BROKER_URL"]


def test_it_runs_in_production_mode_by_default():
    for service in ("migrate", "web", "ingest", "rank", "beat"):
        assert env(service)["LEADERBOARD_PRODUCTION"] == "${LEADERBOARD_PRODUCTION:-true}", service
        assert env(service)["LEADERBOARD_DB_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_it_publishes_web_and_admin_on_this_host_only_by_default():
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith(("127.0.0.1:", "${LEADERBOARD_WEB_BIND:-127.0.0.1}:")), (name, port)
    assert "X-Forwarded-Proto" in " ".join(services["web"]["healthcheck"]["test"])


def test_it_distributes_after_migrating_and_stops_on_the_first_failure():
    services = compose()["services"]
    shell, flags, script = services["migrate"]["command"]
    assert shell == "sh" and "e" in flags.lstrip("-"), "a failing step must fail the job"
    steps = [line.strip() for line in script.splitlines() if line.strip()]
    assert steps[:3] == [
        "python manage.py migrate --noinput",
        "python manage.py distribute_tables",
        "python manage.py install_schedules",
    ]
    # Then only the emptying of the metrics volume (a dead process's counters must go).
    assert steps[3:] == ["find /metrics -name '*.db' -delete"]
    for name in ("web", "ingest", "rank", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["citus-init"] == {"condition": "service_completed_successfully"}


def test_it_puts_haproxy_in_front_of_at_least_two_web_replicas():
    services = compose()["services"]
    web, haproxy = services["web"], services["haproxy"]
    assert web["deploy"]["replicas"] >= 2
    # Replicas cannot share a host port: only the load balancer is published.
    assert "ports" not in web
    assert [str(port).rsplit(":", 1)[1] for port in haproxy["ports"]] == ["8000"]
    assert "haproxy:2.6" in haproxy["image"], "the version the config is checked with"
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert "web" in haproxy["depends_on"]


def test_it_serves_web_with_bin_web_on_every_interface_of_the_container():
    command = compose()["services"]["web"]["command"]
    assert command[:2] == ["python", "bin/web"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"


def test_it_lets_haproxy_health_checks_through_allowed_hosts():
    # docker/haproxy.cfg checks each replica with Host: web.
    allowed = env("web")["DJANGO_ALLOWED_HOSTS"].removeprefix("${DJANGO_ALLOWED_HOSTS:-").removesuffix("}")
    assert "web" in allowed.split(",")
    assert "hdr Host web " in (COMPOSE.parent / "haproxy.cfg").read_text()
