"""One confirmed publish for many requests: the web tier's way onto the ingest queues.

Each web process runs one publisher thread with its own asyncio loop and one AMQP
connection (aiormq, publisher confirms on). A request hands its events over and waits;
the loop takes every request waiting at that moment (up to ``max_events`` events) into
one persistent message and wakes each request when the broker confirmed that message (a
503 on a nack, a return or a timeout: nothing is promised then).

Coalescing: while a message is in flight, requests that arrive wait for its confirm and
then go together, so under load a message carries many requests and nothing waits on a
timer when idle. A full message (``max_events``) does not wait: up to ``max_in_flight``
messages are in flight on the connection at once, each tracked by its delivery tag.

The message is a Celery task message (protocol 2, so Celery's ingest workers run it) with
a lean envelope: the headers are built once, and the body is encoded by msgspec straight
from the typed events (``tasks.messages``), with none of ``send_task``'s routing, signals
or producer pool per message. It goes to the partition of its first user (a single-user
request keeps that user's events in one queue); correctness never depends on which queue
a message lands in, because applying events does not depend on their order (see
``scores.services``) and row locks are taken in key order.
"""

import asyncio
import logging
import os
import socket
import threading
import uuid
from typing import Any

import aiormq
import msgspec
from aiormq.abc import ConfirmationFrameType
from django.conf import settings
from pamqp import commands as spec

from leaderboard_project.celery import app as celery_app
from scores.admission import publish_tally
from scores.partitioning import partition_of
from tasks.messages import WIRE_VERSION, IngestBatch, ScoreEvent
from tasks.queues import APPLY_EVENTS_TASK, ingest_queue_name

logger = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not confirm the events in time; nothing may be promised to the client."""


_WAITING, _TAKEN, _ABANDONED = "waiting", "taken", "abandoned"


class _Request:
    """One request's events and how it hears its answer: a future on the publisher's own
    loop (the front door's coroutines), or an event another thread waits on (a view)."""

    __slots__ = ("done", "error", "events", "future", "lock", "state")

    def __init__(self, events: list[ScoreEvent], future: asyncio.Future | None = None) -> None:
        self.events = events
        self.future = future
        self.error: BaseException | None = None
        self.state = _WAITING
        # A future is only touched on its loop's thread: no event and no lock for it.
        self.done = threading.Event() if future is None else None
        self.lock = threading.Lock() if future is None else None

    def take(self) -> bool:
        """The publisher claims the request; False when its client already gave up."""
        if self.lock is None:
            return self._take()
        with self.lock:
            return self._take()

    def _take(self) -> bool:
        if self.state == _ABANDONED:
            return False
        self.state = _TAKEN
        return True

    def abandon(self) -> bool:
        """The client gives up; False when the publisher already took it (it may still land)."""
        assert self.lock is not None
        with self.lock:
            if self.state == _TAKEN:
                return False
            self.state = _ABANDONED
            return True


# Celery's task message, protocol 2 (celery.app.amqp.as_task_v2), as plain data.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"web-{os.getpid()}@{socket.gethostname()}"
_encoder = msgspec.json.Encoder()


def _task_headers(task_id: str, events: int) -> dict[str, Any]:
    return {
        "lang": "py",
        "task": APPLY_EVENTS_TASK,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": f"({events} events)",
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }


def ingest_message(events: list[ScoreEvent]) -> tuple[bytes, spec.Basic.Properties]:
    """The body and properties of one ingest task message carrying these events."""
    task_id = str(uuid.uuid4())
    body = _encoder.encode(([IngestBatch(version=WIRE_VERSION, events=events)], {}, _EMBED))
    properties = spec.Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,  # persistent: on disk before the confirm
        priority=0,
        correlation_id=task_id,
        reply_to="",
        headers=_task_headers(task_id, len(events)),
    )
    return body, properties


class IngestPublisher:
    def __init__(self, *, max_events: int, max_in_flight: int) -> None:
        self.max_events = max_events
        self.max_in_flight = max_in_flight
        self.publishes = 0  # messages confirmed in this process, read by the tests
        self.in_flight_peak = 0  # the most messages ever in flight at once, read by the tests
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        # Requests waiting to be taken, and their events; the lock is held for an append
        # or a swap only.
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._waiting_events = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._awake = False
        self._in_flight: set[asyncio.Task] = set()
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._declared: set[str] = set()
        self._connect_lock: asyncio.Lock | None = None
        self._runner: asyncio.Task | None = None  # the loop's task, when attached to a caller's loop

    # --- the request's side (any web thread) ---------------------------------------------

    def publish(self, events: list[ScoreEvent]) -> None:
        """Return once the broker confirmed these events; raise BrokerUnavailable otherwise."""
        loop = self._ensure_thread()
        request = _Request(events)
        with self._lock:
            self._waiting.append(request)
            self._waiting_events += len(events)
        if not self._awake:
            loop.call_soon_threadsafe(self._wake_up)
        timeout = settings.LEADERBOARD_PUBLISH_CONFIRM_TIMEOUT
        if not request.done.wait(timeout):
            # Not taken yet: it never will be. Taken: it may still be confirmed, but a 503
            # promises nothing; a client that resends with event ids counts nothing twice.
            request.abandon()
            raise BrokerUnavailable(f"the broker did not confirm within {timeout} s")
        if request.error is not None:
            raise BrokerUnavailable(str(request.error)) from request.error

    async def publish_async(self, events: list[ScoreEvent]) -> None:
        """The same from a coroutine on the loop the publisher is attached to (the front
        door's): no thread waits; the request's future is resolved by the confirm."""
        loop = asyncio.get_running_loop()
        if not self.attach(loop):
            # Started on a loop of its own first (a Django view published before any
            # coroutine did): wait in a thread like the views do.
            await loop.run_in_executor(None, self.publish, events)
            return
        future = loop.create_future()
        with self._lock:
            self._waiting.append(_Request(events, future))
            self._waiting_events += len(events)
        if not self._awake:
            self._wake_up()
        # No timer per request: the request is taken as soon as the message before it is
        # settled, and every message is settled within its tries' confirm timeouts (the
        # publish's own), so the wait is bounded by those of two messages, without a
        # timer for each request.
        await future

    def attach(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Run on this (running) loop, the caller's, instead of a thread of its own; False
        when this process's publisher already runs on another loop."""
        if self._pid == os.getpid():
            return self._loop is loop
        with self._start_lock:
            if self._pid != os.getpid():
                self._reset_state()
                self._wake, self._connect_lock = asyncio.Event(), asyncio.Lock()
                self._runner = loop.create_task(self._run())
                self._loop, self._pid = loop, os.getpid()
        return self._loop is loop

    def _ensure_thread(self) -> asyncio.AbstractEventLoop:
        # One thread per process; a forked child (a web worker) starts its own.
        if self._pid != os.getpid():
            with self._start_lock:
                if self._pid != os.getpid():
                    self._start()
        assert self._loop is not None
        return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._wake = asyncio.Event()
            self._connect_lock = asyncio.Lock()
            started.set()
            loop.run_until_complete(self._run())

        self._reset_state()
        threading.Thread(target=run, name="ingest-publisher", daemon=True).start()
        started.wait()
        self._loop, self._pid = loop, os.getpid()

    def _reset_state(self) -> None:
        # A forked child starts with nothing of its parent's: requests, connection, tasks.
        self._waiting, self._waiting_events, self._in_flight = [], 0, set()
        self._connection = self._channel = None
        self._declared = set()

    # --- the loop's side ---------------------------------------------------------------

    def _wake_up(self) -> None:
        assert self._wake is not None
        self._wake.set()

    def _sendable(self) -> bool:
        if not self._waiting_events:
            return False
        if not self._in_flight:
            return True
        return len(self._in_flight) < self.max_in_flight and self._waiting_events >= self.max_events

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            # Requests wake the loop only while it sleeps (one call_soon_threadsafe, a pipe
            # write): clear first, then look, so a request that came in between is seen.
            self._awake = False
            self._wake.clear()
            if not self._sendable():
                await self._wake.wait()
            self._awake = True
            while self._sendable():
                group = self._take()
                if group:
                    task = asyncio.get_running_loop().create_task(self._send(group))
                    self._in_flight.add(task)
                    self.in_flight_peak = max(self.in_flight_peak, len(self._in_flight))
                    task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._wake_up()  # the next message may go now

    def _take(self) -> list[_Request]:
        with self._lock:
            waiting, self._waiting, self._waiting_events = self._waiting, [], 0
        group: list[_Request] = []
        size = 0
        for position, request in enumerate(waiting):
            if group and size + len(request.events) > self.max_events:
                rest = waiting[position:]
                with self._lock:
                    self._waiting[:0] = rest
                    self._waiting_events += sum(len(r.events) for r in rest)
                break
            if request.take():
                group.append(request)
                size += len(request.events)
        return group

    async def _send(self, group: list[_Request]) -> None:
        events = [event for request in group for event in request.events]
        queue = ingest_queue_name(
            settings.LEADERBOARD_QUEUE_PREFIX, partition_of(events[0].user_id, settings.LEADERBOARD_INGEST_PARTITIONS)
        )
        error: BaseException | None = None
        body, properties = ingest_message(events)
        # As Celery's publish retry policy did: a lost connection, or a queue deleted and
        # declared again behind this connection's back (the message returned), is retried
        # at once on a new channel. A message published twice is applied once (its events
        # keep their ids); a nack (a full queue) is final.
        for attempt in range(1 + settings.CELERY_TASK_PUBLISH_RETRY_POLICY["max_retries"]):
            if attempt:
                await asyncio.sleep(0.1 * attempt)
            try:
                channel = await self._channel_for(queue)
                confirmation = await channel.basic_publish(
                    body,
                    routing_key=queue,  # the default exchange: straight to the queue of that name
                    properties=properties,
                    mandatory=True,  # a queue that is not there returns the message: a 503, not a loss
                    timeout=settings.LEADERBOARD_PUBLISH_CONFIRM_TIMEOUT,
                )
                if not _confirmed(confirmation):
                    raise BrokerUnavailable(f"the broker refused the message ({type(confirmation).__name__})")
                self.publishes += 1
                publish_tally.add(events=len(events), messages=1)
                error = None
                break
            except (BrokerUnavailable, aiormq.exceptions.DeliveryError) as exc:
                error = exc  # a nack: the connection is fine, the message is not stored
                break
            except aiormq.exceptions.PublishError as exc:
                error = exc  # returned: declare the queue again before the next try
                self._declared.discard(queue)
            except Exception as exc:  # noqa: BLE001 - the connection is gone, or a bug: the requests must hear of it
                logger.warning("publish failed: %r", exc)
                error = exc
                await self._reset()
        for request in group:
            if request.done is not None:
                request.error = error
                request.done.set()
            elif not request.future.done():
                if error is None:
                    request.future.set_result(None)
                else:
                    request.future.set_exception(BrokerUnavailable(str(error)))

    async def _channel_for(self, queue: str) -> aiormq.abc.AbstractChannel:
        assert self._connect_lock is not None
        async with self._connect_lock:
            if self._channel is None or self._channel.is_closed:
                await self._reset()
                timeout = settings.CELERY_BROKER_CONNECTION_TIMEOUT
                self._connection = await asyncio.wait_for(aiormq.connect(settings.CELERY_BROKER_URL), timeout)
                self._channel = await self._connection.channel(publisher_confirms=True)
            if queue not in self._declared:
                await _declare(self._channel, queue)
                self._declared.add(queue)
            return self._channel

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declared = set()
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                logger.debug("closing the publisher's connection failed", exc_info=True)


def _confirmed(confirmation: ConfirmationFrameType | None) -> bool:
    return isinstance(confirmation, spec.Basic.Ack)


async def _declare(channel: aiormq.abc.AbstractChannel, name: str) -> None:
    """Declare the queue as the workers do (idempotent; the same arguments, or the broker
    closes the channel): a queue nobody consumes yet still keeps what was confirmed."""
    queue = celery_app.amqp.queues.get(name)
    if queue is None:
        raise BrokerUnavailable(f"no queue {name!r} among Celery's queues")
    await channel.queue_declare(name, durable=queue.durable, arguments=queue.queue_arguments)


_publisher: IngestPublisher | None = None


def ingest_publisher() -> IngestPublisher:
    global _publisher
    if _publisher is None:
        _publisher = IngestPublisher(
            max_events=settings.LEADERBOARD_PUBLISH_MAX_EVENTS,
            max_in_flight=settings.LEADERBOARD_PUBLISH_MAX_IN_FLIGHT,
        )
    return _publisher
