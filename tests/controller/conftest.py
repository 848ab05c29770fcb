"""Fixtures of the notification tests that need no server: an SMTP receiver on loopback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import pytest

from controller.notifications.targets import SMTPServer
from core.ports import free_port


@dataclass
class Mailbox:
    """What an SMTP server on loopback was asked to deliver: one envelope recipient list per message."""

    server: SMTPServer
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.recipients.append(list(envelope.rcpt_tos))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    port = free_port()
    box = Mailbox(SMTPServer("127.0.0.1", port, "", "", "", "teresa@example.com"))
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    yield box
    smtp.stop()
