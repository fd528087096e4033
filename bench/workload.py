"""Request bodies of the load: batches and single events for uniform or Zipf-distributed users."""

import json
from collections.abc import Callable, Sequence

import numpy as np

from bench.load import Call

# The seeding command names users so; loads on seeded boards hit existing users.
USER_FORMAT = "user-{:08d}"

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def uniform(users: int) -> Sampler:
    return lambda rng, n: rng.integers(0, users, size=n)


def zipf(users: int, s: float) -> Sampler:
    """Rank k of ``users`` is drawn with weight 1/k^s: a few users get most events."""
    weights = 1.0 / np.arange(1, users + 1, dtype=np.float64) ** s
    cumulative = np.cumsum(weights / weights.sum())

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cumulative, rng.random(n)), users - 1)

    return draw


def batch_calls(
    url: str | Sequence[str],
    sampler: Sampler,
    *,
    batches: int,
    batch_size: int,
    points_max: int,
    rng: np.random.Generator,
    metadata_bytes: int = 0,
) -> list[Call]:
    """``batches`` POST bodies of ``batch_size`` events with positive points (so sums only grow).

    Given several URLs (boards), each request goes to one of them drawn uniformly. With
    ``metadata_bytes``, every event carries a display name and a metadata object of about
    that many bytes of compact JSON (the cost of profiles, issue 20).
    """
    urls = [url] if isinstance(url, str) else list(url)
    # One board draws nothing, so a one-board load stays what it was before boards were drawn.
    targets = rng.integers(0, len(urls), size=batches) if len(urls) > 1 else [0] * batches
    calls = []
    for target in targets:
        users = sampler(rng, batch_size)
        points = rng.integers(1, points_max + 1, size=batch_size)
        events = [{"user_id": USER_FORMAT.format(u), "points": int(p)} for u, p in zip(users, points, strict=True)]
        if metadata_bytes:
            for event in events:
                event["display_name"] = f"Player {event['user_id']}"
                event["metadata"] = profile_metadata(event["user_id"], metadata_bytes)
        body = json.dumps({"events": events}).encode()
        calls.append(Call("POST", urls[target], body, events=batch_size, points=int(points.sum())))
    return calls


def profile_metadata(user_id: str, size: int) -> dict[str, object]:
    """A metadata object of ``size`` bytes as compact JSON (a game's usual kind of fields)."""
    fields: dict[str, object] = {"level": 42, "guild": "north-wind", "avatar": f"https://cdn.example/a/{user_id}.png"}
    used = len(json.dumps(fields, separators=(",", ":"))) + len(',"note":""')
    fields["note"] = "x" * max(0, size - used)
    return fields


def single_calls(url: str, sampler: Sampler, *, count: int, points_max: int, rng: np.random.Generator) -> list[Call]:
    users = sampler(rng, count)
    points = rng.integers(1, points_max + 1, size=count)
    return [
        Call("POST", url, json.dumps({"user_id": USER_FORMAT.format(u), "points": int(p)}).encode(), 1, int(p))
        for u, p in zip(users, points, strict=True)
    ]


def get_calls(urls: list[str]) -> list[Call]:
    return [Call("GET", url) for url in urls]
