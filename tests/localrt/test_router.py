"""The router: Host-header routing, balancing, 503/404, forwarded headers, streaming, WebSockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid

import aiohttp

from controller.runtime.base import LOG_TIMESTAMP, split_log_timestamp
from core.config import trusted_proxies
from tests.localrt.harness import PYTHON, async_test, harness, until


@async_test
async def test_routes_by_host_and_balances_across_ready_replicas(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.create_app("shop")
        await h.rt.deploy(h.release("shop", 1, formation={"web": 2}, config={"MESSAGE": "hi"}), None, h.out)
        answers = {(await h.get("shop"))[1] for _ in range(6)}
        assert answers == {"hi from web.1\n", "hi from web.2\n"}
        # Case and port in the Host header do not matter; a custom domain reaches the same app.
        assert (await h.get("SHOP", headers={"Host": "Shop.LocalHost"}))[0] == 200
        await h.rt.set_domains("shop", ["www.shop.test"])
        assert (await h.get("shop", headers={"Host": "www.shop.test:80"}))[0] == 200


@async_test
async def test_unknown_host_is_404_and_app_without_ready_process_is_503_naming_it(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.create_app("idle")
        status, body = await h.get("nosuchapp")
        assert status == 404
        status, body = await h.get("idle")
        assert status == 503 and "idle" in body
        assert (await h.get("idle", headers={"Host": "idle.example.org"}))[0] == 404


@async_test
async def test_adds_forwarded_headers(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("fwd", 1), None, h.out)
        status, body = await h.get("fwd", "/headers", headers={"X-Forwarded-For": "10.1.2.3"})
        seen = {k.lower(): v for k, v in json.loads(body).items()}
        assert status == 200
        assert seen["x-forwarded-for"] == "127.0.0.1"  # no proxy is trusted by default
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "fwd.localhost:8080"
        assert seen["host"] == "fwd.localhost:8080"


@async_test
async def test_streams_bodies_both_ways_without_buffering(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("stream", 1), None, h.out)
        # The echo app answers each chunk as it arrives: the client gets the first half
        # back before it sends the second, which only works if nothing buffers the whole body.
        half = os.urandom(256 * 1024)
        reader, writer = await asyncio.open_connection("127.0.0.1", h.rt.router.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: stream.localhost\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (2 * len(half)) + half)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        first = await asyncio.wait_for(reader.readexactly(len(half)), 10)
        writer.write(half[::-1])
        await writer.drain()
        second = await asyncio.wait_for(reader.readexactly(len(half)), 10)
        writer.close()
        assert first == half and second == half[::-1]

        # A large body arrives intact.
        payload = os.urandom(8 * 1024 * 1024)
        async with h.http.post(h.base + "/echo", data=payload, headers={"Host": "stream.localhost"}) as response:
            digest = hashlib.sha256()
            async for chunk in response.content.iter_chunked(65536):
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()


@async_test
async def test_websocket_upgrade_passes_through_both_ways(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("sock", 1, processes={"web": f"{PYTHON} -u wsapp.py"}), None, h.out)
        async with h.http.ws_connect(h.base + "/ws", headers={"Host": "sock.localhost"}) as ws:
            await ws.send_str("ping")
            assert (await ws.receive(timeout=10)).data == "echo: ping"
            await ws.send_bytes(b"abc")
            assert (await ws.receive(timeout=10)).data == b"cba"
            await ws.close()
        assert ws.close_code == 1000


@async_test
async def test_retries_another_replica_when_one_refuses_connections(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("retry", 1, formation={"web": 2}), None, h.out)
        first, second = h.alive("retry")
        # Make web.1 look ready while nothing listens on its port any more.
        await first.stop(1)
        first.state, first.ready = "up", True
        assert sorted(h.rt.supervisor("retry").serving_ports()) == sorted([first.port, second.port])
        statuses = [(await h.get("retry"))[0] for _ in range(4)]
        assert statuses == [200] * 4


@async_test
async def test_forwarded_headers_are_kept_only_from_trusted_proxies_and_a_request_id_is_set(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("fwd", 1), None, h.out)
        spoofed = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
        seen = {k.lower(): v for k, v in json.loads((await h.get("fwd", "/headers", headers=spoofed))[1]).items()}
        assert (seen["x-forwarded-for"], seen["x-forwarded-proto"]) == ("127.0.0.1", "http")
        generated = seen["x-request-id"]
        assert uuid.UUID(generated)

        h.rt.router.trusted_proxies = trusted_proxies({"TERESA_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.0/8"})
        chosen = {**spoofed, "X-Request-Id": "client-chosen-id-0123456789"}
        seen = {k.lower(): v for k, v in json.loads((await h.get("fwd", "/headers", headers=chosen))[1]).items()}
        assert (seen["x-forwarded-for"], seen["x-forwarded-proto"]) == ("6.6.6.6, 127.0.0.1", "https")
        assert seen["x-request-id"] == "client-chosen-id-0123456789"
        bogus = {"X-Request-Id": "short\tid"}
        seen = {k.lower(): v for k, v in json.loads((await h.get("fwd", "/headers", headers=bogus))[1]).items()}
        assert seen["x-request-id"] != bogus["X-Request-Id"] and uuid.UUID(seen["x-request-id"])


@async_test
async def test_each_request_writes_one_access_line_into_the_apps_logs(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("acc", 1), None, h.out)
        assert (await h.get("acc", "/missing?x=1", headers={"X-Request-Id": "abcdefghij0123456789"}))[0] == 404
        assert (await h.get("acc", "/"))[0] == 200
        lines = [line async for line in h.rt.logs("acc", 100, False, "router")]
        assert len(lines) == 2
        stamp, text = split_log_timestamp(lines[0])
        assert LOG_TIMESTAMP.fullmatch(stamp)
        assert re.fullmatch(r'router \| method=GET path="/missing\?x=1" status=404 service=\d+ms '
                            r'request_id=abcdefghij0123456789 fwd="127.0.0.1"', text), text
        assert 'path="/" status=200' in lines[1]
        await h.rt.deploy(h.release("acc", 2, formation={"web": 0}), None, h.out)
        assert (await h.get("acc"))[0] == 503
        assert 'status=503' in [line async for line in h.rt.logs("acc", 1, False, "router")][0]
