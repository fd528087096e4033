"""Send simulated players' scores to a running server over HTTP and show the board move.

Used by `make run` (the demo process): it makes the demo board and a key limited to it
when they are missing, then posts batches of events and prints the top-10 every few
seconds, so a newcomer sees the board change.
"""

import random
import time

import httpx
from django.core.management.base import BaseCommand, CommandParser

from rankings.models import Leaderboard
from rankings.services import leaderboard_create
from scores.models import ApiKey


class Command(BaseCommand):
    help = "Post simulated score events to the API and print the top-10 as it changes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--leaderboard", default="demo")
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--users", type=int, default=5000)
        parser.add_argument("--rate", type=int, default=200, help="events per second")
        parser.add_argument("--show-every", type=float, default=5.0, help="seconds between top-10 prints")
        parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until stopped")

    def handle(self, *args: object, **options: object) -> None:
        slug = str(options["leaderboard"])
        board = Leaderboard.objects.filter(slug=slug).first() or leaderboard_create(slug=slug, name="Demo arena")
        _, key = ApiKey.generate(name=f"simulator for {slug}", leaderboard=board)
        users, rate = int(options["users"]), int(options["rate"])  # type: ignore[call-overload]
        duration, show_every = float(options["duration"]), float(options["show_every"])  # type: ignore[arg-type]
        rng = random.Random()
        # A few players play a lot: a Zipf-like skew makes the top of the board move.
        weights = [1 / (n + 1) for n in range(users)]
        client = httpx.Client(base_url=str(options["url"]), headers={"Authorization": f"Bearer {key}"}, timeout=10)
        started = last_show = time.monotonic()
        sent = 0
        self.stdout.write(f"simulating {rate} events/s on '{slug}' at {options['url']}")
        while not duration or time.monotonic() - started < duration:
            tick = time.monotonic()
            players = rng.choices(range(users), weights=weights, k=max(1, rate // 5))
            events = [{"user_id": f"player-{p}", "points": rng.randint(1, 100)} for p in players]
            try:
                response = client.post(f"/api/v1/leaderboards/{slug}/scores", json={"events": events})
                if response.status_code == 202:
                    sent += len(events)
                else:
                    self.stderr.write(f"{response.status_code}: {response.text[:200]}")
                if time.monotonic() - last_show >= show_every:
                    last_show = time.monotonic()
                    self._show(client, slug, sent)
            except httpx.HTTPError as exc:
                self.stderr.write(f"server not answering yet ({exc.__class__.__name__}); retrying")
                time.sleep(1)
            time.sleep(max(0.0, 0.2 - (time.monotonic() - tick)))

    def _show(self, client: httpx.Client, slug: str, sent: int) -> None:
        top = client.get(f"/api/v1/leaderboards/{slug}/top", params={"limit": 10}).json()
        lines = [f"  {e['rank']:>2}. {e['user_id']:<14} {e['score']:>10}" for e in top.get("entries", [])]
        self.stdout.write(f"top-10 of '{slug}' after {sent} events (as of {top.get('as_of')}):\n" + "\n".join(lines))
