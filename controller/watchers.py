"""The controller's background watchers for `teresa serve`: notification delivery and crash-loop detection."""

from __future__ import annotations

from typing import Any, Coroutine

from controller.controller import Controller
from controller.crashloop import CrashLoopDetector
from controller.notifications.notifier import Notifier
from core import leases
from core.services import Services

CRASHLOOP_LEASE = "periodic:crashloop"


def background(services: Services, controller: Controller) -> list[Coroutine[Any, Any, None]]:
    """What to run as tasks while serving; the notifier listens to the controller's events from now on."""
    notifier = Notifier(services)
    notifier.attach(controller.events)
    detector = CrashLoopDetector(controller.runtime, services.db, controller.events, services.settings.notifications)
    settings = services.settings
    # Deliveries are claimed row by row, so every replica delivers; restarts are watched by one replica only,
    # or every replica would announce the same crash loop.
    watch = leases.while_held(services.db, CRASHLOOP_LEASE, settings.replica_name, settings.deploy_lease_seconds,
                              detector.run)
    return [notifier.run(), watch]
