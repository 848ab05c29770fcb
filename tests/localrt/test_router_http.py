"""The router's HTTP/1.1: pooled connections to the app, body framing both ways, requests it refuses."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from hypothesis import given, strategies as st

from controller.runtime.local.http1 import CHUNK, BadMessage, ChunkedEnd
from controller.runtime.local.proxy import HIGH_WATER
from tests.localrt.harness import async_test, harness, until


async def exchange(port: int, request: bytes) -> bytes:
    """Send one raw request on a new connection; everything the router answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


@async_test
async def test_connections_to_the_app_are_reused_and_chunked_bodies_pass_both_ways(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("pool", 1), None, h.out)
        port = h.rt.router.port
        get = b"GET /peer HTTP/1.1\r\nHost: pool.localhost\r\nConnection: close\r\n\r\n"
        # Five clients one after the other, each on its own connection: one connection to the app.
        peers = {(await exchange(port, get)).rpartition(b"\r\n\r\n")[2] for _ in range(5)}
        assert len(peers) == 1, peers

        # A chunked request body reaches the app whole; a chunked answer reaches an HTTP/1.1 client as sent.
        body = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
        answer = await exchange(port, b"POST /echo HTTP/1.1\r\nHost: pool.localhost\r\nConnection: close\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n" + body)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nhello, world"), answer
        answer = await exchange(port, b"GET /chunked HTTP/1.1\r\nHost: pool.localhost\r\nConnection: close\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in answer
        assert answer.endswith(b"\r\n\r\n6\r\nfirst \r\n7\r\nsecond \r\n6\r\nthird\n\r\n0\r\n\r\n"), answer
        # An HTTP/1.0 client cannot read chunks: it gets the bare body, ended by the connection's close.
        answer = await exchange(port, b"GET /chunked HTTP/1.0\r\nHost: pool.localhost\r\n\r\n")
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert b"Connection: close" in head and b"chunked" not in head and rest == b"first second third\n"


@async_test
async def test_ambiguous_or_malformed_requests_are_refused_with_a_sentence(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("strict", 1), None, h.out)
        port = h.rt.router.port
        # Content-Length and Transfer-Encoding together: where the body ends is ambiguous (request smuggling).
        answer = await exchange(port, b"POST /echo HTTP/1.1\r\nHost: strict.localhost\r\nContent-Length: 5\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400") and b"not valid HTTP/1.1; fix the client" in answer
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: strict.localhost\r\nno colon here\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: strict.localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431") and b"larger than 64 KB" in answer
        # The router still serves the next client.
        assert (await h.get("strict"))[0] == 200


@given(chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6), cuts=st.lists(st.integers(1, 30), max_size=40),
       trailer=st.sampled_from([b"", b"X-Sum: 1\r\n"]))
def test_the_end_of_a_chunked_body_is_found_however_it_is_cut(chunks, cuts, trailer):
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer + b"\r\n"
    stream, end, used, at = body + b"HTTP/1.1 200 OK\r\n", ChunkedEnd(), 0, 0
    for cut in [*cuts, len(stream)]:
        piece, at = stream[at:at + cut], at + cut
        if piece and not end.done:
            used += end.feed(piece)
    assert end.done and used == len(body)


def test_a_bad_chunk_size_is_refused():
    with pytest.raises(BadMessage):
        ChunkedEnd().feed(b"zz\r\nhello\r\n")


@pytest.mark.parametrize("pieces", [
    [b"5\r\nhelloXX0\r\n\r\n"],  # a chunk's data not followed by CRLF
    [b"5\r\nhello\r", b"X0\r\n\r\n"],  # ... found across pieces
    [b"5\r\nhello\n0\r\n\r\n"],  # a bare LF after the data
    [b"5\nhello\r\n0\r\n\r\n"],  # a bare LF ends a size line
    [b"0\r\nX-Sum: 1\n\r\n"],  # ... or a trailer line
    [b"1000000000000\r\n"],  # 13 hex digits: more than 2^48
    [b"0000000000001\r\n"],
    [b"5;\r\nhello\r\n0\r\n\r\n"],  # an extension without a name
    [b'5;a="x\r\nhello\r\n0\r\n\r\n'],  # an unterminated quoted string
    [b"2;\nxx\r\n0\r\n\r\n"],  # a bare LF in an extension
    [b'5 ; a = "x y"\r\nhello\r\n0\r\n\r\n'],  # spaces around ";" and "=" (llhttp refuses them too)
    [b"0\r\nContent-Length: 5\r\n\r\n"],  # framing in the trailers
    [b"0\r\nTransfer-Encoding: chunked\r\n\r\n"],
], ids=["no-crlf", "no-crlf-cut", "bare-lf-after-data", "bare-lf-size", "bare-lf-trailer", "13-digits",
        "13-digits-zeros", "empty-extension", "open-quote", "lf-in-extension", "spaces-in-extension",
        "length-trailer", "coding-trailer"])
def test_chunk_framing_is_read_strictly(pieces):
    end = ChunkedEnd()
    with pytest.raises(BadMessage):
        for piece in pieces:
            end.feed(piece)


@pytest.mark.parametrize("body", [
    b'5;a="x y"\r\nhello\r\n0\r\n\r\n',
    b"5;a=b;c\r\nhello\r\n0\r\n\r\n",
    b'5;q="a\\"b"\r\nhello\r\n0\r\n\r\n',  # a quoted pair
    b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other: two words\r\n\r\n",
], ids=["quoted", "several", "quoted-pair", "trailers"])
def test_well_formed_extensions_and_trailers_pass(body):
    end = ChunkedEnd()
    assert end.feed(body + b"GET / HTTP/1.1\r\n") == len(body) and end.done


def test_a_chunk_size_of_12_hex_digits_is_taken():
    end = ChunkedEnd()
    assert end.feed(b"ffffffffffff;x\r\n") == 16 and end.left == 2 ** 48 - 1


def test_feed_until_data_stops_where_a_chunks_data_starts():
    body = b"5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    end = ChunkedEnd()
    assert end.feed(body, until_data=True) == len(b"5;a=b\r\n") and end.left == 5
    end.skip(5)  # the data passed without being read (spliced)
    at = len(b"5;a=b\r\nhello")
    assert end.feed(body[at:], until_data=True) == len(b"\r\n3\r\n") and end.left == 3  # CRLF checked, next size
    end.skip(3)
    at = body.index(b"abc") + 3
    assert end.feed(body[at:], until_data=True) == len(body) - at and end.done


@async_test
async def test_a_client_that_reads_slowly_pauses_the_app_instead_of_filling_the_routers_memory(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("slowread", 1), None, h.out)
        payload = os.urandom(8 * 1024 * 1024)
        reader, writer = await asyncio.open_connection("127.0.0.1", h.rt.router.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: slowread.localhost\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(payload))
        upload = asyncio.create_task(_send(writer, payload))

        def waiting_for_client() -> int:  # what the router holds for this client, unsent
            return max((c.held() for c in h.rt.router.clients), default=0)

        # The client reads nothing yet: the router stops taking the answer from the app ...
        await until(lambda: any(c.lagging() for c in h.rt.router.clients), timeout=30)
        head = await reader.readuntil(b"\r\n\r\n")
        digest, held = hashlib.sha256(), []
        while piece := await reader.read(65536):  # ... and never holds much while the client catches up
                                                  # (in its buffer, or in the kernel's pipe while it splices)
            held.append(waiting_for_client())
            digest.update(piece)
        await upload
        writer.close()
        assert head.startswith(b"HTTP/1.1 200") and digest.digest() == hashlib.sha256(payload).digest()
        assert max(held) <= HIGH_WATER + 2 * CHUNK, max(held)


async def _send(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(payload)
    await writer.drain()
