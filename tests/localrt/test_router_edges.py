"""The router's HTTP/1.1 at its edges, against a raw app that answers with exactly the bytes a test chooses.

Each test starts a Router in front of one or two tiny asyncio servers ("replicas") and
talks to it over raw sockets: pipelining, interim answers, bodies that end with the
connection or go through the splice path, either side breaking off, and requests the
router must refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import pytest

from controller.runtime.local import splice
from controller.runtime.local.router import Router
from tests.localrt.harness import async_test, until

MB = 1024 * 1024
HOST = b"edge.localhost"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Answer = Callable[[bytes, bytes], bytes]  # (request head, request body) -> the app's answer, as sent


# -- the app side


@dataclass
class Replica:
    """A raw app server: each connection runs `handler`; what it was asked is kept."""
    handler: Handler
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    open: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        """The next request's head and (Content-Length) body, or None at the connection's end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        self.heads.append(head)
        self.bodies.append(body)
        return head, body


def answering(answer: Answer) -> Callable[[Replica], Handler]:
    """A keep-alive replica answering each request with answer(head, body)."""
    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await replica.request(reader)) is not None:
                writer.write(answer(*request))
                await writer.drain()
        return handler
    return make


def whole(body: bytes, status: bytes = b"200 OK") -> bytes:
    """A whole answer with a Content-Length."""
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


def path_of(head: bytes) -> bytes:
    return head.split(b" ", 2)[1]


@dataclass
class Routed:
    router: Router
    replicas: list[Replica]
    access: list[str]
    errors: list[dict]
    splices: list[splice.Splice]  # bodies that went through the kernel alone

    @property
    def port(self) -> int:
        assert self.router.port is not None
        return self.router.port

    async def connect(self) -> Conn:
        return Conn(*await asyncio.open_connection("127.0.0.1", self.port))


@contextlib.asynccontextmanager
async def routed(*makers: Callable[[Replica], Handler]) -> AsyncIterator[Routed]:
    """A router for the app `edge` whose replicas are made by `makers`; no unhandled error may be reported."""
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    replicas, servers = [], []
    for make in makers:
        replica = Replica(handler=None)  # type: ignore[arg-type]
        replica.handler = make(replica)
        server = await asyncio.start_server(replica.serve, "127.0.0.1", 0)
        replica.port = server.sockets[0].getsockname()[1]
        replicas.append(replica)
        servers.append(server)
    access: list[str] = []
    router = Router("localhost", lambda app: [r.port for r in replicas],
                    access_log=lambda app, line: access.append(f"{app} {line}"))
    router.add_app("edge")
    splices: list[splice.Splice] = []
    original = splice.Splice

    class Counted(original):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            splices.append(self)

    splice.Splice = Counted  # type: ignore[misc]
    await router.start(("127.0.0.1", 0))
    try:
        yield Routed(router, replicas, access, errors, splices)
    finally:
        splice.Splice = original  # type: ignore[misc]
        await router.stop()
        for server in servers:
            server.close()
    assert not errors, errors


# -- the client side


def request(method: bytes = b"GET", path: bytes = b"/", headers: bytes = b"", body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n" % (method, path, HOST, length, headers) + body


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, method: bytes = b"GET") -> tuple[bytes, bytes]:
        """One answer's head and body as sent (chunked framing included); bodies without framing to EOF."""
        return await asyncio.wait_for(self._response(method), 30)

    async def _response(self, method: bytes) -> tuple[bytes, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if method == b"HEAD" or 100 <= status < 200 or status in (204, 304):
            return head, b""
        if re.search(rb"(?im)^transfer-encoding:.*chunked", head):
            return head, await self._chunked()
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length:
            return head, await self.reader.readexactly(int(length.group(1)))
        return head, await self.reader.read()

    async def _chunked(self) -> bytes:
        raw = b""
        while True:
            line = await self.reader.readuntil(b"\r\n")
            raw += line
            size = int(line.split(b";")[0], 16)
            if size == 0:
                break
            raw += await self.reader.readexactly(size + 2)
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            raw += line
        return raw + line

    async def rest(self) -> bytes:
        """Everything until the router closes the connection."""
        return await asyncio.wait_for(self.reader.read(), 30)

    def close(self) -> None:
        self.writer.close()


def status(head: bytes) -> int:
    return int(head[9:12])


# -- pipelining and keep-alive


@async_test
async def test_pipelined_requests_are_answered_in_order():
    async with routed(answering(lambda head, body: whole(path_of(head)))) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/one") + request(path=b"/two") + request(path=b"/three"))
        bodies = [(await conn.response())[1] for _ in range(3)]
        assert bodies == [b"/one", b"/two", b"/three"]
        assert r.replicas[0].connections == 1
        conn.close()


@async_test
async def test_the_connection_is_kept_after_a_request_body_read_whole():
    async with routed(answering(lambda head, body: whole(body))) as r:
        conn = await r.connect()
        await conn.send(request(b"POST", b"/post", body=b"x" * 10_000))
        head, body = await conn.response()
        assert status(head) == 200 and body == b"x" * 10_000 and b"close" not in head.lower()
        await conn.send(request(path=b"/after"))
        head, body = await conn.response()
        assert status(head) == 200 and body == b""
        assert [path_of(h) for h in r.replicas[0].heads] == [b"/post", b"/after"]
        conn.close()


@async_test
async def test_expect_100_continue_is_answered_by_the_router_and_not_passed_on():
    async with routed(answering(lambda head, body: whole(body, b"201 Created"))) as r:
        conn = await r.connect()
        await conn.send(b"POST /upload HTTP/1.1\r\nHost: edge.localhost\r\nExpect: 100-continue\r\n"
                        b"Content-Length: 5\r\n\r\n")
        interim, _ = await conn.response(b"POST")  # before the body is sent
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await conn.send(b"hello")
        head, body = await conn.response(b"POST")
        assert status(head) == 201 and body == b"hello"
        assert b"expect" not in r.replicas[0].heads[0].lower()
        conn.close()


@async_test
async def test_interim_answers_of_the_app_reach_the_client_before_the_final_one():
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"

    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (req := await replica.request(reader)) is not None:
                if path_of(req[0]) == b"/apart":  # interim and final answer in writes of their own
                    writer.write(early)
                    await writer.drain()
                    await asyncio.sleep(0.05)  # the 103 reaches the router alone
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                    writer.write(OK)
                else:
                    writer.write(early + b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
                await writer.drain()
        return handler

    async with routed(make) as r:
        conn = await r.connect()
        for path in (b"/apart", b"/together"):
            await conn.send(request(path=path))
            answers = [await conn.response() for _ in range(3)]
            assert answers == [(early, b""), (b"HTTP/1.1 100 Continue\r\n\r\n", b""),
                               (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"ok")], answers
        conn.close()


@async_test
async def test_a_head_answer_with_a_content_length_has_no_body_and_the_connection_goes_on():
    def answer(head: bytes, body: bytes) -> bytes:
        if head.startswith(b"HEAD "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        return OK

    async with routed(answering(answer)) as r:
        conn = await r.connect()
        await conn.send(request(b"HEAD"))
        head, _ = await conn.response(b"HEAD")
        assert status(head) == 200 and b"Content-Length: 1234" in head
        await conn.send(request())
        assert await conn.response() == (OK[:-2], b"ok")
        # Pipelined, too: the HEAD's answer does not swallow the next one's.
        await conn.send(request(b"HEAD") + request())
        assert status((await conn.response(b"HEAD"))[0]) == 200
        assert await conn.response() == (OK[:-2], b"ok")
        assert r.replicas[0].connections == 1
        conn.close()


# -- bodies that end with the connection, or pass through the kernel (splice.py)


def until_close(size: int) -> Callable[[Replica], Handler]:
    payload = os.urandom(size)

    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            req = await replica.request(reader)
            if req is None:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
            for at in range(0, size, 256 * 1024):
                writer.write(payload[at:at + 256 * 1024])
                await writer.drain()
        return handler

    make.payload = payload  # type: ignore[attr-defined]
    return make


@pytest.mark.parametrize("size", [10, 3 * MB])
@async_test
async def test_an_answer_that_ends_with_the_apps_connection_reaches_the_client_whole(size):
    make = until_close(size)
    async with routed(make) as r:
        for _ in range(2):  # and the router serves the next client
            conn = await r.connect()
            await conn.send(request())  # a keep-alive client: the router closes after this answer
            head, body = await conn.response()
            assert status(head) == 200 and b"connection: close" in head.lower()
            assert body == make.payload  # type: ignore[attr-defined]
            assert await conn.rest() == b""
            conn.close()
        assert len(r.access) == 2 and all("status=200" in line for line in r.access)
        assert r.splices or size < MB


def big_answers(chunked: bytes, length_body: bytes) -> Callable[[Replica], Handler]:
    """/chunked: the chunked body as given (written in cut pieces); /length: a Content-Length body; else OK."""
    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (req := await replica.request(reader)) is not None:
                path = path_of(req[0])
                if path == b"/chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
                    # Cut where the router must find a size line's end across reads.
                    for at in range(0, len(chunked), 99_991):
                        writer.write(chunked[at:at + 99_991])
                        await writer.drain()
                        await asyncio.sleep(0.001)
                elif path == b"/length":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(length_body))
                    writer.write(length_body)
                else:
                    writer.write(OK)
                await writer.drain()
        return handler
    return make


def chunk(data: bytes, extension: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(data), extension, data)


@async_test
async def test_large_bodies_pass_byte_exact_and_leave_the_apps_connection_clean():
    chunked = (chunk(b"a", b";a=b") + chunk(os.urandom(70_000)) + chunk(b"xyz", b";a=b;c") +
               chunk(os.urandom(MB + 1), b";big") + chunk(os.urandom(300_000)) + b"0\r\nX-Sum: 42\r\n\r\n")
    length_body = os.urandom(5 * MB)
    async with routed(big_answers(chunked, length_body)) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/length"))
        head, body = await conn.response()
        assert status(head) == 200 and len(body) == len(length_body) and body == length_body
        await conn.send(request(path=b"/chunked"))
        head, body = await conn.response()
        assert status(head) == 200 and b"transfer-encoding: chunked" in head.lower()
        assert len(body) == len(chunked) and body == chunked
        await conn.send(request(path=b"/small"))
        assert await conn.response() == (OK[:-2], b"ok")
        assert r.replicas[0].connections == 1  # one app connection, reused after each large body
        assert len(r.splices) >= 2
        conn.close()


@async_test
async def test_a_chunked_body_cut_inside_its_size_lines_passes_byte_exact():
    # Tiny chunks, each size line written in two pieces: the router must peek lines cut short.
    pieces = [chunk(os.urandom(n), b";ext=%d" % n) for n in (1, 2, 3, 300_000, 5, 1)] + [b"0\r\n\r\n"]

    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (req := await replica.request(reader)) is not None:
                if path_of(req[0]) != b"/cut":
                    writer.write(OK)
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in pieces:
                    for part in (piece[:2], piece[2:]):
                        writer.write(part)
                        await writer.drain()
                        await asyncio.sleep(0.02)  # each part reaches the router alone
        return handler

    async with routed(make) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/cut"))
        head, body = await conn.response()
        assert body == b"".join(pieces)
        await conn.send(request())
        assert await conn.response() == (OK[:-2], b"ok")
        assert r.replicas[0].connections == 1
        conn.close()


@pytest.mark.parametrize("chunked", [False, True])
@async_test
async def test_bytes_the_app_sends_past_a_spliced_body_never_reach_the_next_request(chunked):
    body = chunk(os.urandom(2 * MB)) + b"0\r\n\r\n" if chunked else os.urandom(2 * MB)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nbogus!"

    def answer(head: bytes, _: bytes) -> bytes:
        if path_of(head) == b"/big":  # more than its framing says
            return b"HTTP/1.1 200 OK\r\n%s\r\n\r\n%s%s" % (framing, body, smuggled)
        return OK

    async with routed(answering(answer)) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/big") + request(path=b"/next"))
        head, first = await conn.response()
        assert first == body
        second = await conn.response()
        assert second == (OK[:-2], b"ok"), second
        conn.close()


@pytest.mark.parametrize("direction", ["request", "response"])
@async_test
async def test_transfer_codings_before_chunked_are_passed_on_with_the_body_they_code(direction):
    coded = b"Transfer-Encoding: gzip, chunked\r\n"

    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await replica.request(reader) is not None:
                if direction == "request":
                    await reader.readuntil(b"0\r\n\r\n")
                    writer.write(OK)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\n" + coded + b"\r\n" + chunk(b"\x1f\x8b...") + b"0\r\n\r\n")
                await writer.drain()
        return handler

    async with routed(make) as r:
        conn = await r.connect()
        if direction == "request":
            await conn.send(b"POST / HTTP/1.1\r\nHost: edge.localhost\r\n" + coded + b"\r\n" + chunk(b"\x1f\x8b...")
                            + b"0\r\n\r\n")
            assert status((await conn.response(b"POST"))[0]) == 200
            assert b"gzip" in r.replicas[0].heads[0], r.replicas[0].heads[0]
        else:
            await conn.send(request())
            head, _ = await conn.response()
            assert b"gzip" in head, head
        conn.close()


# -- either side breaking off


@async_test
async def test_an_app_that_closes_mid_body_cuts_the_clients_connection_and_the_router_goes_on():
    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (req := await replica.request(reader)) is not None:
                if path_of(req[0]) == b"/cut":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (3 * MB) + b"x" * MB)
                    await writer.drain()
                    return
                writer.write(OK)
                await writer.drain()
        return handler

    async with routed(make) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/cut"))
        received = await conn.rest()  # closed, not left waiting for the 2 MB that never come
        head, _, body = received.partition(b"\r\n\r\n")
        assert status(head) == 200 and 0 < len(body) < 3 * MB and body == b"x" * len(body)
        conn.close()
        assert any('path="/cut"' in line for line in r.access), r.access
        conn = await r.connect()
        await conn.send(request(path=b"/next"))
        assert await conn.response() == (OK[:-2], b"ok")
        conn.close()
        await until(lambda: len(r.router.clients) <= 1)


@async_test
async def test_what_the_app_sent_before_closing_mid_body_reaches_the_client():
    sent = os.urandom(600 * 1024)

    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await replica.request(reader)
            # Head, part of the body and the connection's end, all before the router reads any of it.
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (3 * MB) + sent)
        return handler

    async with routed(make) as r:
        conn = await r.connect()
        await conn.send(request())
        head, _, body = (await conn.rest()).partition(b"\r\n\r\n")
        assert status(head) == 200
        assert len(body) == len(sent) and body == sent  # a proxy passes on what it received, then cuts
        conn.close()


@pytest.mark.parametrize("read", [64 * 1024, 0])
@async_test
async def test_a_client_that_leaves_mid_body_is_let_go_on_both_sides(read):
    payload = b"y" * (32 * MB)

    def answer(head: bytes, _: bytes) -> bytes:
        if path_of(head) == b"/huge":
            return whole(payload)
        return OK

    async with routed(answering(answer)) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/huge"))
        await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 30)
        if read:
            await asyncio.wait_for(conn.reader.readexactly(read), 30)
        else:  # the router is stuck waiting for this client to read (its buffer or the splice's pipe full)
            await until(lambda: any(c.lagging() for c in r.router.clients), timeout=30)
        conn.writer.transport.abort()  # unread bytes: a reset
        await until(lambda: not r.router.clients, timeout=30, what="the router to drop the client")
        await until(lambda: r.replicas[0].open == 0, timeout=30, what="the router to close the app's connection")
        assert any('path="/huge" status=200' in line for line in r.access), r.access
        conn = await r.connect()
        await conn.send(request(path=b"/next"))
        assert await conn.response() == (OK[:-2], b"ok")
        conn.close()


@async_test
async def test_a_head_sent_one_byte_at_a_time_is_served():
    async with routed(answering(lambda head, body: OK)) as r:
        conn = await r.connect()
        conn.writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in request(path=b"/slow", headers=b"X-Padding: " + b"p" * 40 + b"\r\n"):
            await conn.send(bytes([byte]))
            await asyncio.sleep(0.002)  # each byte its own segment, all well inside the header timeout
        assert await conn.response() == (OK[:-2], b"ok")
        assert path_of(r.replicas[0].heads[0]) == b"/slow"
        conn.close()


# -- replicas that do not answer HTTP


def garbage(replica: Replica) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await replica.request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n")
        await writer.drain()
        await reader.read()  # and keeps the connection open
    return handler


def hangs_up(replica: Replica) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await replica.request(reader)  # closes without a word
    return handler


@async_test
async def test_an_app_answering_garbage_gets_the_client_a_502_naming_it():
    async with routed(garbage) as r:
        conn = await r.connect()
        await conn.send(request())
        head, body = await conn.response()
        assert status(head) == 502 and b"edge" in body and b"SSH" not in body
        assert await conn.rest() == b""
        conn.close()
        assert any("status=502" in line for line in r.access)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",  # to a request that asked no upgrade
    b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
], ids=["unasked-101", "ambiguous-204", "four-digit-status"])
@async_test
async def test_an_answer_a_client_could_misread_gets_it_a_502(answer):
    async with routed(answering(lambda head, body: answer)) as r:
        conn = await r.connect()
        await conn.send(request())
        head, body = await conn.response()
        assert status(head) == 502 and b"edge" in body
        conn.close()


@async_test
async def test_a_get_left_unanswered_by_one_replica_is_retried_on_the_other():
    async with routed(hangs_up, answering(lambda head, body: OK)) as r:
        for _ in range(4):  # the router starts at each replica in turn
            conn = await r.connect()
            await conn.send(request())
            assert await conn.response() == (OK[:-2], b"ok")
            conn.close()
        assert r.replicas[0].heads, "the first replica was never tried"
        # A POST with a body is not retried: the app may have acted on it.
        statuses = set()
        for _ in range(2):
            conn = await r.connect()
            await conn.send(request(b"POST", body=b"once"))
            statuses.add(status((await conn.response(b"POST"))[0]))
            conn.close()
        assert statuses == {200, 502}


# -- an app too slow to answer (Heroku's H12)


def never_answers_first(replica: Replica) -> Handler:
    """Takes the first request and never answers it (until the router closes); answers later ones."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(replica.heads) == 0:
            await replica.request(reader)
            await reader.read()  # the router's close
            return
        while (req := await replica.request(reader)) is not None:
            writer.write(whole(path_of(req[0])))
            await writer.drain()
    return handler


@pytest.mark.parametrize("stuck", [
    request(path=b"/stuck"),
    request(b"POST", b"/stuck", headers=b"Content-Length: 0\r\n"),  # a body, empty: sent with the head
])
@async_test
async def test_a_request_the_app_never_answers_gets_a_503_naming_the_setting_and_the_app_is_let_go(stuck):
    async with routed(never_answers_first) as r:
        r.router.response_timeout = 0.5
        conn = await r.connect()
        await conn.send(stuck)
        head, body = await conn.response()
        assert status(head) == 503
        assert b"edge took too long to answer" in body and b"TERESA_ROUTER_RESPONSE_TIMEOUT" in body
        await until(lambda: r.replicas[0].open == 0, what="the app's connection to be closed")
        await until(lambda: any("status=503" in line and '"/stuck"' in line for line in r.access), what="access line")
        await conn.send(request(path=b"/next"))  # the request was read whole: the connection goes on
        assert (await conn.response())[1] == b"/next"
        conn.close()


@async_test
async def test_an_answer_begun_in_time_may_take_longer_than_the_timeout_to_finish():
    def make(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await replica.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
            for piece in (b"sl", b"ow", b"ly"):  # the stimulus: a body paced over three timeouts
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.5)
        return handler

    async with routed(make) as r:
        r.router.response_timeout = 0.5
        conn = await r.connect()
        await conn.send(request())
        head, body = await conn.response()
        assert status(head) == 200 and body == b"slowly"
        conn.close()


@async_test
async def test_the_timeout_starts_once_the_app_has_the_whole_request_body():
    async with routed(answering(lambda head, body: whole(body))) as r:
        r.router.response_timeout = 0.5
        conn = await r.connect()
        await conn.send(b"POST /upload HTTP/1.1\r\nHost: edge.localhost\r\nContent-Length: 6\r\n\r\n")
        for piece in (b"up", b"lo", b"ad"):  # the stimulus: an upload paced over three timeouts
            await conn.send(piece)
            await asyncio.sleep(0.5)
        head, body = await conn.response(b"POST")
        assert status(head) == 200 and body == b"upload"
        conn.close()


# -- requests refused


@pytest.mark.parametrize("header", [
    b"X-A: one\nX-B: two\r\n",  # a bare LF inside a header line
    b"X-A: one\r\n two\r\n",  # obs-fold: a continuation line
    b"X-A: one\r\n\ttwo\r\n",
    b"X-A: one\rtwo\r\n",  # a bare CR
    b"X-A : one\r\n",  # white space before the colon
])
@async_test
async def test_header_lines_a_proxy_could_misread_are_refused(header):
    async with routed(answering(lambda head, body: OK)) as r:
        conn = await r.connect()
        await conn.send(request(headers=header))
        answer = await conn.rest()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert not r.replicas[0].heads
        conn.close()


@pytest.mark.parametrize("raw", [
    request(headers=b"Host: other.localhost\r\n"),  # which Host routes, which one does the app read?
    request(path=b"/a\x01b"),  # a control byte in the request target
    request(b"POST", headers=b"Content-Length: " + b"1" * 5000 + b"\r\n"),  # past what int() takes
    request(b"POST", headers=b"Content-Length: 2\r\n", body=b"ab"),  # two equal ones (llhttp refuses them too)
    request(b"POST", headers=b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
    request(headers=b"X-A: a\x01b\r\n"),  # a control byte in a header value
    request(b"CONNECT"),  # (in any form) llhttp would take what follows for the tunnel's
    request(path=b"/ws", headers=b"Connection: Upgrade\r\nUpgrade: websocket\r\n", body=b"GET / HTTP/1.1\r\n\r\n"),
], ids=["two-hosts", "control-byte-in-target", "5000-digit-length", "two-equal-lengths", "chunked-twice",
        "control-byte-in-value", "connect", "websocket-with-a-body"])
@async_test
async def test_requests_a_proxy_could_misread_are_refused(raw):
    async with routed(answering(lambda head, body: OK)) as r:  # routed() fails on an unhandled exception
        conn = await r.connect()
        await conn.send(raw)
        answer = await conn.rest()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert not r.replicas[0].heads
        conn.close()


def recording(replica: Replica) -> Handler:
    """Keeps all it is sent on a connection (in replica.bodies); answers OK when a chunked body seems ended."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        replica.bodies.append(b"")
        while piece := await reader.read(65536):
            replica.bodies[-1] += piece
            if replica.bodies[-1].endswith(b"0\r\n\r\n"):
                writer.write(OK)
                await writer.drain()
    return handler


async def closed(conn: Conn) -> bytes:
    """What the router sent before it closed the connection (a reset counts as a close)."""
    try:
        return await conn.rest()
    except ConnectionResetError:
        return b""


SMUGGLED = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: edge.localhost\r\n\r\n"


@pytest.mark.parametrize("body", [
    b"5\nhello\r\n0\r\n\r\n",  # a bare LF ends a size line
    b"5\r\nhelloXX0\r\n\r\n",  # a chunk's data not followed by CRLF
    # Read with bare LF line ends: a chunk "xx", then one hiding a request. Read by an app that takes
    # ";\nxx" for an extension: a chunk "35", the body's end, then GET /smuggled.
    b"2;\nxx\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
], ids=["bare-lf-size-line", "no-crlf-after-data", "extension-with-bare-lf"])
@async_test
async def test_a_chunked_request_body_framed_leniently_is_cut_off_not_passed_on(body):
    async with routed(recording) as r:
        conn = await r.connect()
        await conn.send(b"POST /upload HTTP/1.1\r\nHost: edge.localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        assert await closed(conn) == b""
        conn.close()
        await until(lambda: r.replicas[0].open == 0, what="the router to close the app's connection")
        received = b"".join(r.replicas[0].bodies)
        assert b"/smuggled" not in received and received.count(b" HTTP/1.1\r\n") <= 1, received


@async_test
async def test_a_get_retried_after_a_replica_closed_mid_head_gets_only_the_other_replicas_answer():
    def cut_mid_head(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await replica.request(reader)
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nSet-Cookie: who=first\r\nX-Cut: ")
            await writer.drain()  # then closes
        return handler

    async with routed(cut_mid_head, answering(lambda head, body: OK)) as r:
        for _ in range(2):  # the router starts at each replica in turn
            conn = await r.connect()
            await conn.send(request())
            assert await conn.response() == (OK[:-2], b"ok")
            conn.close()
        assert r.replicas[0].heads, "the first replica was never tried"
        assert len(r.access) == 2 and all("status=200" in line for line in r.access), r.access


@async_test
async def test_an_access_log_that_fails_does_not_stick_the_connection():
    def full_disk(app: str, line: str) -> None:
        raise OSError(28, "No space left on device")

    async with routed(answering(lambda head, body: OK)) as r:
        r.router.access_log = full_disk
        conn = await r.connect()
        for _ in range(2):  # both on one keep-alive connection
            await conn.send(request())
            assert await conn.response() == (OK[:-2], b"ok")
        assert r.replicas[0].connections == 1
        conn.close()


@async_test
async def test_pipelined_requests_sent_before_the_clients_half_close_are_all_answered():
    async with routed(answering(lambda head, body: whole(path_of(head)))) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/one") + request(path=b"/two"))
        conn.writer.write_eof()
        assert [(await conn.response())[1] for _ in range(2)] == [b"/one", b"/two"]
        assert await conn.rest() == b""  # and then the router closes
        conn.close()


@async_test
async def test_a_spliced_chunked_answer_with_a_chunk_not_followed_by_crlf_cuts_the_client():
    chunked = chunk(b"a" * 100) + b"%x\r\n" % (2 * MB) + os.urandom(2 * MB) + b"XX0\r\n\r\n"
    async with routed(big_answers(chunked, b"")) as r:
        conn = await r.connect()
        await conn.send(request(path=b"/chunked"))
        received = await closed(conn)  # within 30 s: not left waiting
        assert received.startswith(b"HTTP/1.1 200 OK\r\n") and b"XX0\r\n" not in received
        assert r.splices
        conn.close()
        conn = await r.connect()
        await conn.send(request(path=b"/next"))
        assert await conn.response() == (OK[:-2], b"ok")
        conn.close()


# -- attacks found in review (the router's framing as a whole: tests/localrt/test_router_framing.py)


@pytest.mark.parametrize("named", [b"content-length", b"Content-Length, Host", b"keep-alive, host"])
@async_test
async def test_a_framing_header_a_client_names_in_connection_is_still_passed_on(named):
    """`Connection: content-length` once took out the Content-Length the router had framed the body by: the
    app read no body and answered the body as a request of its own (no access line, forged X-Forwarded-*),
    and the pooled connection fell out of step with the router."""
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: edge.localhost\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
    async with routed(answering(lambda head, body: whole(path_of(head)))) as r:
        conn = await r.connect()
        await conn.send(request(b"POST", b"/upload", headers=b"Connection: %s\r\n" % named, body=smuggled)
                        + request(path=b"/next"))
        assert [(await conn.response())[1] for _ in range(2)] == [b"/upload", b"/next"]
        assert [path_of(head) for head in r.replicas[0].heads] == [b"/upload", b"/next"]
        assert r.replicas[0].bodies[0] == smuggled
        assert b"\r\nHost: edge.localhost\r\n" in r.replicas[0].heads[0]
        assert len(r.access) == 2
        conn.close()


@async_test
async def test_a_framing_header_the_app_names_in_connection_still_reaches_the_client():
    answer = b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\nContent-Length: 2\r\n\r\nok"
    async with routed(answering(lambda head, body: answer)) as r:
        conn = await r.connect()
        await conn.send(request() + request(path=b"/again"))
        for _ in range(2):  # the client finds the first answer's end, and the second answer after it
            head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 30)
            assert b"\r\nContent-Length: 2\r\n" in head and b"connection" not in head.lower(), head
            assert await conn.reader.readexactly(2) == b"ok"
        conn.close()


@pytest.mark.parametrize("host", [
    b"edge.localhost:x@evil.example", b"edge.localhost:80@evil.example", b"edge.localhost:8o", b"edge.localhost:",
    b"edge.localhost:123456", b"edge.localhost/evil", b"edge.localhost\tevil", b"[::1", b"[edge.localhost]",
    b"edge.localhost:80:80",
])
@async_test
async def test_a_host_header_that_is_not_a_host_and_port_is_refused(host):
    async with routed(answering(lambda head, body: OK)) as r:
        conn = await r.connect()
        await conn.send(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        answer = await conn.rest()
        assert answer.startswith(b"HTTP/1.1 400 ") and b"Host header" in answer, answer
        assert not r.replicas[0].heads and not r.access
        conn.close()


@pytest.mark.parametrize("host", [b"edge.localhost", b"EDGE.localhost.:8080", b"edge.localhost:80"])
@async_test
async def test_a_valid_host_and_port_is_routed_and_passed_on_as_sent(host):
    async with routed(answering(lambda head, body: OK)) as r:
        conn = await r.connect()
        await conn.send(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        assert await conn.response() == (OK[:-2], b"ok")
        assert b"\r\nX-Forwarded-Host: %s\r\n" % host in r.replicas[0].heads[0]
        conn.close()


ACCESS_PATH = re.compile(r'edge method=GET path="((?:[^"\\\x00-\x1f\x7f]|\\.)*)" status=200 service=\d+ms '
                         r'request_id=\S+ fwd="127\.0\.0\.1"')


@async_test
async def test_a_quote_in_the_path_cannot_forge_fields_of_the_access_line():
    path = b'/a"b\\"status=500"request_id=forged"fwd="6.6.6.6'
    async with routed(answering(lambda head, body: OK)) as r:
        conn = await r.connect()
        await conn.send(request(path=path))
        assert await conn.response() == (OK[:-2], b"ok")
        conn.close()
        match = ACCESS_PATH.fullmatch(r.access[0])
        assert match and json.loads(f'"{match.group(1)}"') == path.decode(), r.access[0]


# -- tunnels (WebSocket)


UPGRADE = request(path=b"/ws", headers=b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


@pytest.mark.parametrize("early", [False, True], ids=["after-the-101", "before-the-101"])
@async_test
async def test_a_clients_half_close_passes_through_a_tunnel_and_the_app_still_answers(early):
    def echo(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await replica.request(reader)
            writer.write(SWITCHING)
            while data := await reader.read(65536):
                writer.write(data)
            writer.write(b"bye")  # at the client's end
            await writer.drain()
        return handler

    async with routed(echo) as r:
        conn = await r.connect()
        if early:  # the client's ping and end come with its request, before the app has answered
            await conn.send(UPGRADE + b"ping")
            conn.writer.write_eof()
        else:
            await conn.send(UPGRADE)
        assert await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 30) == SWITCHING
        if not early:
            await conn.send(b"ping")
            conn.writer.write_eof()
        assert await conn.rest() == b"pingbye"
        conn.close()
        assert any("status=101" in line for line in r.access), r.access


@async_test
async def test_an_apps_half_close_passes_through_a_tunnel_and_the_client_can_still_send():
    got: list[bytes] = []

    def says_hello(replica: Replica) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await replica.request(reader)
            writer.write(SWITCHING + b"hello")
            writer.write_eof()
            got.append(await reader.read())  # still reading, until the client's end
        return handler

    async with routed(says_hello) as r:
        conn = await r.connect()
        await conn.send(UPGRADE)
        assert await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 30) == SWITCHING
        assert await conn.rest() == b"hello"  # the app's end reached the client
        await conn.send(b"late")
        conn.writer.write_eof()
        await until(lambda: got, what="the app to read to the client's end")
        assert got == [b"late"]
        conn.close()
