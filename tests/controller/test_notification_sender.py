"""An e-mail target is one envelope recipient, or nothing is sent (found in review)."""

from __future__ import annotations

import pytest

from controller.notifications.queue import Claimed
from controller.notifications.sender import Outcome, send
from tests.controller.conftest import Mailbox


def delivery(url: str) -> Claimed:
    return Claimed(1, url, "s" * 64, "deploy", '{"app": "shop", "event": "deploy"}', 0)


@pytest.mark.parametrize("target", ["email:root,security,ops@victim.example", "email:undisclosed:;@victim.example",
                                    "email:ops@localhost"])
@pytest.mark.asyncio
async def test_a_stored_email_target_that_is_not_one_address_is_refused_without_sending(
        target: str, mailbox: Mailbox) -> None:
    outcome = await send(delivery(target), http=None, smtp=mailbox.server, timeout=10,  # type: ignore[arg-type]
                         allow_private=True)
    assert outcome == Outcome(False, "not one e-mail address with a full domain; add one target per address",
                              retry=False)
    assert mailbox.recipients == []


@pytest.mark.asyncio
async def test_an_email_goes_to_its_one_address(mailbox: Mailbox) -> None:
    outcome = await send(delivery("email:ops+teresa@victim.example"), http=None,  # type: ignore[arg-type]
                         smtp=mailbox.server, timeout=10, allow_private=True)
    assert outcome == Outcome(True, "sent by e-mail")
    assert mailbox.recipients == [["ops+teresa@victim.example"]]
