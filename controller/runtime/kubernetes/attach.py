"""`run` on Kubernetes: the client's stdin, and its terminal, forwarded to the one-off pod through `attach`.

The pod's container has stdin open for one attach (`stdinOnce`): Teresa attaches
over the API server's WebSocket (channel protocol v5.channel.k8s.io, else v4),
where each binary message starts with its channel: 0 stdin, 1 stdout, 2 stderr,
3 error, 4 resize ({"Width", "Height"}); closing the attachment is the
container's end of input.

Without a terminal, output comes from the container's log as it does for any
one-off (nothing printed before the attach is lost) and the attachment carries
stdin only. With a terminal (`ssh -t`), the attachment carries both ways, raw,
so prompts and line editing work; what the process printed before the attach
is not replayed, as with `kubectl run -it`. The exit status is the container's
terminated state either way.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from controller.runtime.base import LineSink
from controller.runtime.kubernetes.oneoff import OneOffPod, PodFailed
from core import log
from core.commands import Input, Output, Terminal

logger = log.get("runtime.kubernetes")
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CTRL_D = b"\x04"
ENDED_GRACE = 10.0  # seconds for a process that could not be attached to to show as ended


class AttachFailed(Exception):
    """The message is a phrase; `forbidden`: Teresa lacks the permission, no use waiting."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


@dataclass
class Attachment:
    ws: aiohttp.ClientWebSocketResponse
    received: bool = False  # any output came
    error: str = ""         # what the error channel said (e.g. the container is not running)

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(bytes([STDIN]) + data)

    async def resize(self, terminal: Terminal) -> None:
        size = json.dumps({"Width": terminal.columns, "Height": terminal.rows}).encode()
        await self.ws.send_bytes(bytes([RESIZE]) + size)

    async def output(self) -> AsyncIterator[bytes]:
        """What the process prints (stdout and stderr), until the attachment ends."""
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel in (STDOUT, STDERR) and data:
                self.received = True
                yield data
            elif channel == ERROR and data:
                self.error = _status_message(data)


def _status_message(data: bytes) -> str:
    """The message of the Status the error channel carries (or its text)."""
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(text).get("message") or text)[:300]
    return text[:300]


@contextlib.asynccontextmanager
async def attach(pod: OneOffPod, *, tty: bool) -> AsyncIterator[Attachment]:
    """An attachment to the pod's container: stdin only, or stdin and output with a terminal. Raises AttachFailed."""
    endpoint = await pod.kube.endpoint()
    url = f"{endpoint.url}/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/attach"
    flag = "true" if tty else "false"
    query = {"container": pod.container, "stdin": "true", "stdout": flag, "stderr": "false", "tty": flag}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, params=query, headers=endpoint.headers, ssl=endpoint.ssl,
                                       protocols=PROTOCOLS, autoping=True, heartbeat=30)
        except aiohttp.WSServerHandshakeError as exc:
            raise AttachFailed(f"Kubernetes refused to attach to its pod (HTTP {exc.status})",
                               forbidden=exc.status in (401, 403)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AttachFailed(f"its pod could not be attached to ({type(exc).__name__})") from None
        async with ws:
            yield Attachment(ws)


async def run_attached(pod: OneOffPod, stdin: Input, out: Output) -> int:
    """Run the one-off pod with `stdin` forwarded (and its terminal, if any); its exit status. Raises PodFailed."""
    async def lines(line: str) -> None:
        await out.write(line + "\n")

    async with pod.started():
        if stdin.terminal is None:
            return await _with_pipe(pod, stdin, lines)
        try:
            async with attach(pod, tty=True) as attachment:
                await _converse(attachment, stdin.terminal, stdin, out)
                if attachment.error and not attachment.received:  # e.g. it had ended already
                    raise AttachFailed(f"its pod could not be attached to ({attachment.error})")
        except AttachFailed as exc:
            await _unattached(pod, exc)
            return await pod.follow(lines)  # it ended before the attach: show what it printed
        return await pod.exit_status()


async def _unattached(pod: OneOffPod, failure: AttachFailed) -> None:
    """Not attached: fine when the process has ended already (it read no input); else it would wait forever."""
    if not failure.forbidden:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ENDED_GRACE):
                await pod.exit_status()
                return
    hint = "; the operator must grant Teresa get and create on pods/attach" if failure.forbidden else ""
    raise PodFailed(f"{failure}{hint}")


async def _with_pipe(pod: OneOffPod, stdin: Input, lines: LineSink) -> int:
    feeding = asyncio.create_task(_feed_pipe(pod, stdin))
    following = asyncio.create_task(pod.follow(lines))
    try:
        await asyncio.wait({feeding, following}, return_when=asyncio.FIRST_COMPLETED)
        if feeding.done():
            feeding.result()  # raises PodFailed when stdin could not be forwarded
        return await following
    finally:
        for task in (feeding, following):
            task.cancel()
        await asyncio.gather(feeding, following, return_exceptions=True)


async def _feed_pipe(pod: OneOffPod, stdin: Input) -> None:
    """Forward stdin up to its end, then detach: the container's stdin ends (stdinOnce)."""
    try:
        async with attach(pod, tty=False) as attachment:
            while (chunk := await stdin.chunk()) != b"":
                if isinstance(chunk, bytes):
                    await attachment.send(chunk)
    except AttachFailed as exc:
        await _unattached(pod, exc)
    except ConnectionError as exc:  # it ended without reading all of its stdin
        logger.info("stdin not forwarded", pod=pod.name, error=str(exc))


async def _converse(attachment: Attachment, terminal: Terminal, stdin: Input, out: Output) -> None:
    await attachment.resize(terminal)
    feeding = asyncio.create_task(_feed_terminal(attachment, stdin))
    try:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        async for data in attachment.output():
            if text := decoder.decode(data):
                await out.write(text)
        if rest := decoder.decode(b"", final=True):
            await out.write(rest)
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)


async def _feed_terminal(attachment: Attachment, stdin: Input) -> None:
    """Keys and size changes; the client's end of input is a terminal's, Ctrl-D (the process decides what it means)."""
    while (chunk := await stdin.chunk()) != b"":
        if isinstance(chunk, Terminal):
            await attachment.resize(chunk)
        else:
            await attachment.send(chunk)
    await attachment.send(CTRL_D)
