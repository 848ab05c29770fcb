"""The background worker: controller events become queued deliveries, sent and retried with backoff.

`Notifier` subscribes to the controller's EventBus; the subscriber only appends
to a list (a push never waits for it). `run` writes those events into the
delivery queue table, then sends what is due, each delivery in its own task,
so one slow receiver holds up nobody else: at most CONCURRENCY at a time, and
at most TEAM_CONCURRENCY of one team's, so a team whose receivers are slow
leaves the other slots to the other teams. After a failure the next attempt
waits retry_base, then twice that, and so on, up to max_attempts in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
from collections import Counter
from typing import Callable

import aiohttp

from controller.events import Event, EventBus
from controller.notifications import queue, sender
from controller.notifications.sender import Outcome, send
from controller.notifications.targets import SMTPServer, parse_smtp_url
from core import log as logging
from core import metrics
from core.config import ConfigError
from core.models import utcnow
from core.services import Services

log = logging.get(__name__)
MAX_BACKOFF = 3600.0
CONCURRENCY = 16
TEAM_CONCURRENCY = 4  # of them, one team's at most
IDLE = 60.0  # look at the queue at least this often (another server may have queued something)


class Notifier:
    def __init__(self, services: Services, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.services = services
        self.settings = services.settings.notifications
        self.clock = clock
        try:
            self.smtp: SMTPServer | None = parse_smtp_url(self.settings.smtp_url) if self.settings.smtp_url else None
        except ValueError as exc:
            raise ConfigError(f"{exc}; set it like smtp+starttls://user:password@mail.example.com?from=teresa@example.com"
                              ) from None
        self._events: list[Event] = []
        self._wake = asyncio.Event()
        self._inflight: dict[int, tuple[int | None, asyncio.Task[None]]] = {}  # delivery -> (team, its task)

    def attach(self, bus: EventBus) -> Callable[[], None]:
        return bus.subscribe(self.note)

    def note(self, event: Event) -> None:
        """The subscriber: remember the event and wake the worker; nothing else, nothing that blocks."""
        self._events.append(event)
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt, after `attempts` failed ones."""
        return min(self.settings.retry_base * 2.0 ** (attempts - 1), MAX_BACKOFF)

    async def run(self) -> None:
        """Until cancelled: queue noted events, send due deliveries, sleep until the next is due."""
        async with sender.session(self.settings.allow_private) as http:
            try:
                while True:
                    self._wake.clear()
                    try:
                        await self._queue_events()
                        await self._start_due(http)
                        delay = await self._until_next_due()
                    except Exception:  # a database hiccup: keep the worker alive, try again soon
                        log.exception("notifications_worker_failed")
                        delay = self.settings.retry_base
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
            finally:
                tasks = [task for _, task in self._inflight.values()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _queue_events(self) -> None:
        while self._events:
            event = self._events[0]
            count = await self.services.db.run(lambda s: queue.enqueue(s, event))
            self._events.pop(0)
            if count:
                log.info("notification_queued", app=event.app, kind=event.kind.value, targets=count)

    async def _start_due(self, http: aiohttp.ClientSession) -> None:
        free = CONCURRENCY - len(self._inflight)
        if free <= 0:
            return
        lease = dt.timedelta(seconds=self.settings.timeout * 2 + 30)
        now = self.clock()
        busy = Counter(team for team, _ in self._inflight.values())
        claimed = await self.services.db.run(
            lambda s: queue.claim_due(s, now=now, lease=lease, limit=free, skip=set(self._inflight), busy=busy,
                                      per_team=TEAM_CONCURRENCY))
        for delivery in claimed:
            task = asyncio.create_task(self._attempt(delivery, http), name=f"notification {delivery.id}")
            self._inflight[delivery.id] = (delivery.team, task)
            task.add_done_callback(functools.partial(self._done, delivery.id))

    def _done(self, key: int, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._wake.set()

    async def _until_next_due(self) -> float:
        due = await self.services.db.run(queue.next_due)
        if due is None:
            return IDLE
        return min(max((due - self.clock()).total_seconds(), 0.01), IDLE)

    async def _attempt(self, delivery: queue.Claimed, http: aiohttp.ClientSession) -> None:
        try:
            outcome = await send(delivery, http=http, smtp=self.smtp, timeout=self.settings.timeout,
                                 allow_private=self.settings.allow_private)
        except Exception as exc:  # a bug in sending must not lose the delivery: it is retried
            log.exception("notification_send_failed", delivery=delivery.id)
            outcome = Outcome(False, f"internal error ({type(exc).__name__})")
        attempts = delivery.attempts + 1
        retry_at = None
        if not outcome.ok and outcome.retry and attempts < self.settings.max_attempts:
            retry_at = self.clock() + dt.timedelta(seconds=self.backoff(attempts))
        status = await asyncio.shield(self.services.db.run(
            lambda s: queue.record(s, delivery.id, ok=outcome.ok, result=outcome.result, retry_at=retry_at)))
        metrics.notification_deliveries_total.labels(
            outcome="delivered" if outcome.ok else ("retry" if status == "pending" else "failed")).inc()
        log.info("notification_attempt", delivery=delivery.id, kind=delivery.event, attempt=attempts,
                 result=outcome.result, status=status)
