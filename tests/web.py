"""The real web tier (bin/web: granian, the score front door in front of Django) on the
test database: another process than the test's, with its own memos, as in production."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def web_server(app: str = "django", **env: str) -> Iterator[str]:
    """Start bin/web (``--app django`` or ``scores``, one worker process) and yield its
    base URL; killed on exit."""
    port = free_port()
    (ROOT / ".run").mkdir(exist_ok=True)
    log = open(ROOT / ".run" / "test-web.log", "a")  # closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "bin/web", "--app", app, "--port", str(port), "--workers", "1", "--threads", "8"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "LEADERBOARD_DB_NAME": connection.settings_dict["NAME"],
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"bin/web exited with {proc.returncode}; see .run/test-web.log"
            try:
                httpx.get(f"{url}/api/v1/leaderboards/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "bin/web did not answer within 60 s"
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
