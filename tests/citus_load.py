"""A load for the Citus pipeline tests: HTTP clients posting batches with resends, and the
exact totals they must produce."""

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx


@dataclass
class Load:
    requests: list[list[dict]]
    expected: dict[str, int]
    events: int

    @classmethod
    def make(cls, *, events: int, users: int, seed: int, resend_share: float = 0.1) -> "Load":
        rng = random.Random(seed)
        made = [
            {"user_id": f"player-{rng.randrange(users)}", "points": rng.randint(-20, 300), "event_id": f"ev-{n}"}
            for n in range(events)
        ]
        expected: dict[str, int] = {}
        for event in made:
            expected[event["user_id"]] = expected.get(event["user_id"], 0) + event["points"]
        stream = made + rng.sample(made, int(events * resend_share))
        rng.shuffle(stream)
        requests, i = [], 0
        while i < len(stream):
            size = rng.choice([1, 1, 5, 50, 200])
            requests.append(stream[i : i + size])
            i += size
        return cls(requests=requests, expected=expected, events=len(stream))

    def send(self, base_url: str, key: str, slug: str, clients: int, pause: Callable[[], None] = lambda: None) -> int:
        """Post every request from ``clients`` threads; returns the events accepted (all 202)."""
        failures: list[str] = []
        lock = threading.Lock()

        def share(part: list[list[dict]]) -> int:
            accepted = 0
            with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
                for batch in part:
                    pause()
                    response = client.post(f"/api/v1/leaderboards/{slug}/scores", json={"events": batch})
                    if response.status_code != 202:
                        with lock:
                            failures.append(f"{response.status_code} {response.text[:200]}")
                        continue
                    accepted += response.json()["accepted"]
            return accepted

        with ThreadPoolExecutor(clients) as pool:
            accepted = sum(pool.map(share, [self.requests[i::clients] for i in range(clients)]))
        assert failures == [], failures[:5]
        return accepted
