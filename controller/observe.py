"""Small metric helpers for the release path, kept out of the workflow's code."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from core import metrics


@contextlib.contextmanager
def release_phase_running(app: str) -> Iterator[None]:
    """While the block runs, teresa_release_phase_started_timestamp_seconds{app} says since when
    (a release phase stuck past a limit is an alert); the series goes away when it ends."""
    metrics.release_phase_started.labels(app=app).set(time.time())
    try:
        yield
    finally:
        metrics.release_phase_started.remove(app)
