"""What happened to an app, told to whoever listens: the controller's event hook.

The deploy workflow, the release path and the crash-loop detector `emit` typed
events; subscribers (metrics, notifications) are called synchronously and must
only note the event down — queue it, count it — never do I/O, so a push is
never slowed by a listener. A failing subscriber is logged and skipped.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Callable

from core import log as logging

log = logging.get(__name__)


class EventKind(enum.StrEnum):
    DEPLOY = "deploy"                  # a release succeeded: push, config change, scale, rollback, ...
    BUILD_FAILED = "build-failed"      # a pushed commit did not build (or timed out)
    RELEASE_FAILED = "release-failed"  # the release phase failed, or the rollout did and was undone
    CRASH = "crash"                    # a process type started crash-looping (once per episode)
    CRASH_RECOVERED = "crash-recovered"  # ... and stopped restarting for a whole window


def parse_kinds(text: str) -> list[EventKind]:
    """`deploy,crash` -> the kinds; ValueError names the unknown one and the known ones."""
    kinds = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        try:
            kinds.append(EventKind(word))
        except ValueError:
            known = ", ".join(k.value for k in EventKind)
            raise ValueError(f"'{word}' is not an event; the events are: {known}") from None
    return kinds


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Event:
    app: str
    kind: EventKind
    reason: str                      # one line for a human: "push", "build failed: npm ERR! ...", ...
    who: str = ""                    # the user whose action it was; "" for what nobody did (a crash)
    release: int | None = None       # the release it concerns, when there is one
    when: dt.datetime = field(default_factory=_now)

    def to_json(self) -> dict[str, object]:
        return {"app": self.app, "event": self.kind.value, "release": f"v{self.release}" if self.release else None,
                "who": self.who or None, "when": self.when.isoformat().replace("+00:00", "Z"),
                "reason": one_line(self.reason)}


def one_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event from now on; returns the function that stops it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # one listener's bug must not fail a push or silence the others
                log.exception("event_subscriber_failed", app=event.app, kind=event.kind.value)
