"""The service as deployed: bin/web (granian, several processes, metrics in multiprocess mode), a
real Celery worker, and the live page in headless Chromium.

Chromium is Debian's package (bin/ensure-browser installs it), driven by Playwright's
Python API with ``executable_path``: nothing is downloaded.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from rankings.services import leaderboard_create
from scores.models import ApiKey
from tests.checks import db_scores, eventually

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = "merge_tree"
# Set to a folder (docs/) to keep the screenshots beside the test's own copies.
SCREENSHOTS_DIR = os.environ.get("LEADERBOARD_SCREENSHOTS_DIR")
WEB = [sys.executable, "bin/web", "--app", "django", "--workers", "2", "--threads", "8"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def web(django_db_setup: None, django_db_blocker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bin/web (granian) on a free port, on the test database, with two worker processes."""
    port = free_port()
    multiproc = tmp_path_factory.mktemp("prometheus")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "LEADERBOARD_DB_NAME": connection.settings_dict["NAME"],
        "LEADERBOARD_RANKING_STRATEGY": STRATEGY,
        "LEADERBOARD_METRICS_PUBLIC": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    log_path = ROOT / ".run" / "test-web-live.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            [*WEB, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bin/web did not start; see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def board_and_key() -> tuple[str, str]:
    # A fresh slug per test: the web processes keep boards by slug for a while.
    slug = f"live-{uuid.uuid4().hex[:8]}"
    leaderboard_create(slug=slug, name="Live Arena")
    return slug, ApiKey.generate(name=slug, is_admin=True)[1]


def post(url: str, slug: str, key: str, events: list[dict]) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/leaderboards/{slug}/scores",
        json={"events": events},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def accepted_in(scrape: str, slug: str) -> float:
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if sample.name == "leaderboard_events_accepted_total" and sample.labels.get("board") == slug:
                return sample.value
    return 0.0


def test_it_serves_admin_static_files_from_the_web_tier(web):
    response = httpx.get(f"{web}/static/admin/css/base.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "body" in response.text


@pytest.mark.parametrize("strategy", [STRATEGY])
def test_it_scrapes_metrics_that_agree_with_the_events_sent_under_load(web, worker):
    slug, key = board_and_key()
    sent = 0
    lock = threading.Lock()
    stop = threading.Event()

    def load(client_no: int) -> None:
        nonlocal sent
        batch = 0
        while not stop.is_set():
            events = [{"user_id": f"c{client_no}-u{n % 40}", "points": 1} for n in range(batch * 25, batch * 25 + 25)]
            response = post(web, slug, key, events)
            assert response.status_code == 202, response.text
            with lock:
                sent += response.json()["accepted"]
            batch += 1

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    scrapes = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        response = httpx.get(f"{web}/metrics", timeout=10)
        assert response.status_code == 200
        scrapes.append(accepted_in(response.text, slug))
        with lock:
            assert scrapes[-1] <= sent + 4 * 25  # at most the requests in flight ahead of the ledger
        time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert sent > 0 and len(scrapes) >= 3
    assert scrapes == sorted(scrapes)  # a counter summed over processes never goes back
    final = httpx.get(f"{web}/metrics", timeout=10).text
    assert accepted_in(final, slug) == sent
    assert 'leaderboard_queue_messages{queue="' in final and "leaderboard_broker_up 1.0" in final

    # The events the counter saw were all applied, and the ingest hook counted them per second.
    from rankings.models import Leaderboard

    board = Leaderboard.objects.get(slug=slug)
    eventually(lambda: _equal(sum(db_scores(board).values()), sent), timeout=120)
    activity = httpx.get(f"{web}/api/v1/leaderboards/{slug}/activity").json()
    assert sum(count for _, count in activity["series"]) + _current_second(board.id) == sent


def _current_second(leaderboard_id: int) -> int:
    from rankings.activity import activity_key
    from rankings.cache import redis_client

    now = int(time.time())
    return sum(int(redis_client().get(activity_key(leaderboard_id, s)) or 0) for s in (now, now + 1))


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def chromium_path() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is not installed: run bin/ensure-browser"
    return path


@pytest.mark.parametrize("strategy", [STRATEGY])
def test_it_updates_the_live_page_in_a_browser(web, worker, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    slug, key = board_and_key()
    User.objects.create_superuser("ops", password="ops-password")
    assert (
        post(web, slug, key, [{"user_id": "alice", "points": 120}, {"user_id": "bob", "points": 80}]).status_code == 202
    )
    for n in range(12):
        post(web, slug, key, [{"user_id": f"player-{n}", "points": 10 + n * 5}])

    # No ORM from here on: Playwright's sync API runs an event loop in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            page.goto(f"{web}/boards/{slug}/")
            rows = page.locator("#top tbody tr")
            expect(rows.first).to_contain_text("alice", timeout=15_000)
            expect(page.locator("#freshness")).to_contain_text("ago")

            # A new leader: on the page within 2 s of the 202.
            assert post(web, slug, key, [{"user_id": "carol", "points": 500}]).status_code == 202
            expect(rows.first).to_contain_text("carol", timeout=2_000)
            expect(rows.nth(1)).to_contain_text("alice")

            # Some traffic for the events/s chart.
            for n in range(15):
                post(web, slug, key, [{"user_id": f"fan-{n}-{m}", "points": 1} for m in range(20)])
                time.sleep(0.2)
            expect(page.locator("#activity rect").first).to_be_attached(timeout=5_000)

            page.fill("#search-user", "bob")
            page.click("#search button")
            summary = page.locator("#search-summary")
            expect(summary).to_contain_text("bob: rank 3 of", timeout=5_000)
            expect(page.locator("#search-around tr.me")).to_contain_text("bob")
            page.wait_for_timeout(2_500)  # one more activity poll, for the picture
            shots = [tmp_path / "live-board.png"]
            page.screenshot(path=str(shots[0]), full_page=True)

            page.fill("#search-user", "nobody-here")
            page.click("#search button")
            expect(page.locator("#search-result .error")).to_contain_text("no score on this board")

            page.goto(f"{web}/admin/login/?next=/admin/pipeline/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-password")
            page.click("input[type=submit]")
            expect(page.locator("#queues")).to_be_visible()
            expect(page.locator("#last-reconcile")).to_contain_text("Last finished")
            # The admin's own CSS reached the browser (WhiteNoise under granian).
            assert page.evaluate("getComputedStyle(document.querySelector('#header')).display") == "flex"
            shots.append(tmp_path / "admin-pipeline.png")
            page.screenshot(path=str(shots[1]), full_page=True)
        finally:
            browser.close()
    for shot in shots:
        assert shot.stat().st_size > 10_000
        if SCREENSHOTS_DIR:
            shutil.copy(shot, Path(SCREENSHOTS_DIR) / shot.name)
