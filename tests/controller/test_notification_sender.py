"""A receiver cannot take the server's memory or time: answers that never end, gzip bombs and stalls against a
real HTTP server on loopback; an e-mail target is one envelope recipient, or nothing is sent (found in review)."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from aiohttp import web

from controller.notifications import sender
from controller.notifications.queue import Claimed
from controller.notifications.sender import RESPONSE_LIMIT, Outcome, send
from tests.controller.conftest import Mailbox, Serve

MiB = 1 << 20
ENOUGH = 128 * MiB  # what the server sends at most before it holds the answer open: "never ends" for a sender
TAKEN_AT_MOST = 48 * MiB  # what the socket buffers on both sides hold at most (tcp_rmem's limit is 32 MiB)


def delivery(url: str) -> Claimed:
    return Claimed(1, url, "s" * 64, "deploy", '{"app": "shop", "event": "deploy"}', 0)


async def deliver(url: str, timeout: float = 10) -> Outcome:
    async with sender.session(allow_private=True) as http:
        return await send(delivery(url), http=http, smtp=None, timeout=timeout, allow_private=True)


def gzip_bomb() -> tuple[bytes, bytes]:
    """The first piece of a gzip stream of zeros and a piece to repeat after it: each inflates to 1 MiB."""
    zeros, compressor = bytes(MiB), zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first, compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same after a full flush


class Answer:
    """A handler that answers 200 with `pieces` as the body, as fast as the client takes them, then holds the
    answer open until the test ends; notes the request's headers, what it sent, and whether the client hung up."""

    def __init__(self, pieces: list[bytes] | None = None, headers: dict[str, str] | None = None) -> None:
        self.pieces, self.headers = pieces or [], headers or {}
        self.sent, self.asked, self.hung_up = 0, asyncio.Event(), asyncio.Event()
        self.request_headers: dict[str, str] = {}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.request_headers = dict(request.headers)
        await request.read()
        response = web.StreamResponse(headers=self.headers)
        await response.prepare(request)
        self.asked.set()
        try:
            for piece in self.pieces:
                await response.write(piece)
                self.sent += len(piece)
            await asyncio.Event().wait()  # the end of the answer never comes
        except ConnectionError:
            self.hung_up.set()
        return response


@pytest.mark.asyncio
async def test_an_answer_that_never_ends_is_read_up_to_the_cap_and_the_delivery_completes(serve: Serve) -> None:
    endless = Answer([b"x" * (64 * 1024)] * (ENOUGH // (64 * 1024)))
    assert await deliver(await serve(endless) + "/hook") == Outcome(True, "HTTP 200")
    await asyncio.wait_for(endless.hung_up.wait(), 10)  # the sender hung up instead of reading on
    assert endless.sent < TAKEN_AT_MOST, endless.sent


@pytest.mark.asyncio
async def test_a_gzip_bomb_is_never_inflated_and_the_delivery_completes(serve: Serve) -> None:
    first, again = gzip_bomb()
    bomb = Answer([first] + [again] * (ENOUGH // MiB - 1), {"Content-Encoding": "gzip"})  # 128 MiB inflated
    assert await deliver(await serve(bomb) + "/hook") == Outcome(True, "HTTP 200")
    assert bomb.request_headers["Accept-Encoding"] == "identity"


@pytest.mark.asyncio
async def test_the_delivery_session_hands_over_an_answer_as_sent(serve: Serve) -> None:
    first, _ = gzip_bomb()
    url = await serve(Answer([first], {"Content-Encoding": "gzip"}))
    async with sender.session(allow_private=True) as http, http.get(url) as response:
        assert await response.content.read(RESPONSE_LIMIT) == first[:RESPONSE_LIMIT]  # gzip, not zeros


@pytest.mark.asyncio
async def test_an_answer_that_stalls_ends_the_delivery_at_the_timeout(serve: Serve) -> None:
    stall = Answer([b"partial"])
    outcome = await deliver(await serve(stall) + "/hook", timeout=0.5)
    assert stall.asked.is_set() and outcome == Outcome(False, "no answer within 0.5s")


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
