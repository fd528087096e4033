"""The HAProxy configs: docker/haproxy.cfg (compose) and haproxy/local.cfg (bin/lb).

Both are checked by HAProxy itself (`haproxy -c`), their defaults are held equal, and the
local one is run for real in front of two tiny backends: requests are spread over both,
a backend that fails its /healthz check leaves the rotation, and HAProxy's own errors
are JSON like every other answer under /api/.
"""

import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER_CFG = ROOT / "docker" / "haproxy.cfg"
LOCAL_CFG = ROOT / "haproxy" / "local.cfg"
HAPROXY = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")

needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="HAProxy is not installed")


def section(text: str, name: str) -> list[str]:
    """The directive lines of one section, comments and blank lines left out."""
    lines, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace():
            inside = line.strip() == name
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


@needs_haproxy
@pytest.mark.parametrize("cfg", [DOCKER_CFG, LOCAL_CFG], ids=["docker", "local"])
def test_it_ships_configs_that_haproxy_accepts(cfg):
    result = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    # A warning is a setting HAProxy ignores or will refuse: none is allowed.
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("cfg", [DOCKER_CFG, LOCAL_CFG], ids=["docker", "local"])
def test_it_balances_over_kept_alive_connections_with_health_checks_and_timeouts(cfg):
    text = cfg.read_text()
    defaults, backend = section(text, "defaults"), section(text, "backend web")
    assert "mode http" in defaults and "option http-keep-alive" in defaults
    timeouts = {line.split()[1] for line in defaults if line.startswith("timeout ")}
    assert {"connect", "client", "server", "http-request", "http-keep-alive"} <= timeouts
    assert {"balance leastconn", "http-reuse always", "option httpchk"} <= set(backend)
    assert any(re.match(r"http-check send meth GET uri /healthz ", line) for line in backend)
    servers = [line for line in backend if line.startswith(("server ", "server-template "))]
    assert len(servers) >= 2 or re.match(r"server-template web \d+ web:8000$", servers[0])


def test_it_keeps_the_local_defaults_equal_to_the_docker_ones():
    assert section(LOCAL_CFG.read_text(), "defaults") == section(DOCKER_CFG.read_text(), "defaults")


def test_it_puts_the_local_proxy_on_8000_in_front_of_8001_and_8002():
    text = LOCAL_CFG.read_text()
    assert section(text, "frontend http")[0] == "bind 127.0.0.1:8000"
    servers = [line.split()[2] for line in section(text, "backend web") if line.startswith("server ")]
    assert servers == ["127.0.0.1:8001", "127.0.0.1:8002"]


# --- the local config, run ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Backend:
    """A stand-in web process: answers its own name, and /healthz while it is healthy."""

    def __init__(self, name: str) -> None:
        backend = self
        self.name, self.healthy = name, True

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                ok = self.path != "/healthz" or backend.healthy
                body = f'{{"backend": "{backend.name}"}}'.encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_proxy(tmp_path) -> Iterator[tuple[str, list[Backend]]]:
    """haproxy/local.cfg through bin/lb, on free ports instead of 8000-8002 (which a
    running `make run` may hold)."""
    backends = [Backend("web1"), Backend("web2")]
    port = free_port()
    text = LOCAL_CFG.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    text = text.replace("127.0.0.1:8001", f"127.0.0.1:{backends[0].port}")
    text = text.replace("127.0.0.1:8002", f"127.0.0.1:{backends[1].port}")
    # Checks every 100 ms, so that a state change shows within the test's patience.
    text = text.replace("check inter 2s", "check inter 100ms")
    cfg = tmp_path / "local.cfg"
    cfg.write_text(text)
    proc = subprocess.Popen([str(ROOT / "bin" / "lb"), str(cfg)], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url, backends
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for backend in backends:
            backend.close()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def spread(url: str, n: int = 20) -> Counter:
    with httpx.Client(base_url=url, timeout=5) as client:
        return Counter(client.get("/api/v1/leaderboards/").json()["backend"] for _ in range(n))


@needs_haproxy
def test_it_spreads_requests_and_drops_a_backend_that_fails_its_check(local_proxy):
    url, (web1, _) = local_proxy
    wait_for(lambda: set(spread(url)) == {"web1", "web2"})
    web1.healthy = False
    wait_for(lambda: set(spread(url)) == {"web2"})
    web1.healthy = True
    wait_for(lambda: set(spread(url)) == {"web1", "web2"})


@needs_haproxy
def test_it_answers_json_when_no_backend_is_up(local_proxy):
    url, backends = local_proxy
    for backend in backends:
        backend.healthy = False

    def refused() -> bool:
        return httpx.get(f"{url}/api/v1/leaderboards/", timeout=5).status_code == 503

    wait_for(refused)
    response = httpx.get(f"{url}/api/v1/leaderboards/", timeout=5)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "1"
    assert "detail" in response.json()
