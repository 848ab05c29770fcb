"""Services plus the controller: what the commands of the upper layers are given."""

from __future__ import annotations

from dataclasses import dataclass

from controller.controller import Controller
from core.services import Services


@dataclass(frozen=True)
class Platform(Services):
    controller: Controller

    @classmethod
    def assemble(cls, services: Services, controller: Controller) -> "Platform":
        return cls(settings=services.settings, db=services.db, storage=services.storage, controller=controller)
