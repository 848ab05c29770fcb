"""The controller's background watchers for `teresa serve`: notification delivery and crash-loop detection."""

from __future__ import annotations

from typing import Any, Coroutine

from controller.controller import Controller
from controller.crashloop import CrashLoopDetector
from controller.notifications.notifier import Notifier
from core.services import Services


def background(services: Services, controller: Controller) -> list[Coroutine[Any, Any, None]]:
    """What to run as tasks while serving; the notifier listens to the controller's events from now on."""
    notifier = Notifier(services)
    notifier.attach(controller.events)
    detector = CrashLoopDetector(controller.runtime, services.db, controller.events, services.settings.notifications)
    return [notifier.run(), detector.run()]
