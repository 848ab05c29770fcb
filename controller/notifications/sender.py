"""Sending one notification: a signed JSON POST, or an e-mail through the operator's SMTP server.

The signature scheme (documented in README.md, "Notifications"): the header
`X-Teresa-Signature: sha256=HEX`, where HEX is the HMAC-SHA256 of the raw
request body keyed with the target's secret. The body carries `when`, so a
receiver can also refuse old replays.

A receiver is not trusted with the server's memory or time: an answer is read
up to RESPONSE_LIMIT bytes and never inflated, and each delivery (connecting,
the answer's headers, that capped read) ends within the timeout as a whole.
"""

from __future__ import annotations

import asyncio
import email.message
import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass

import aiohttp

from controller.notifications.queue import Claimed
from controller.notifications.targets import GuardedResolver, SMTPServer, check_url_host, email_address, is_email

SIGNATURE_HEADER = "X-Teresa-Signature"
USER_AGENT = "Teresa-Notifications/1"
RESPONSE_LIMIT = 4096  # bytes of an answer read at most, then the connection is dropped: the status is what counts


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (tests use it too): compare in constant time."""
    return hmac.compare_digest(signature(secret, body), header)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: str  # "HTTP 204", "connection refused", ...
    retry: bool = True  # False: trying again cannot help (a refused address)


def session(allow_private: bool) -> aiohttp.ClientSession:
    """The HTTP client deliveries go through: names checked as they resolve, no cookies, one connection per
    delivery, no timeout of its own (`send` bounds each delivery), and answers as sent, never inflated."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private), force_close=True)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                 timeout=aiohttp.ClientTimeout())


async def send(delivery: Claimed, *, http: aiohttp.ClientSession, smtp: SMTPServer | None, timeout: float,
               allow_private: bool) -> Outcome:
    if is_email(delivery.url):
        return await _mail(delivery, smtp, timeout)
    return await _post(delivery, http, timeout, allow_private)


async def _post(delivery: Claimed, http: aiohttp.ClientSession, timeout: float, allow_private: bool) -> Outcome:
    body = delivery.payload.encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Accept-Encoding": "identity",
               "X-Teresa-Event": delivery.event, "X-Teresa-Delivery": str(delivery.id),
               SIGNATURE_HEADER: signature(delivery.secret, body)}
    try:
        async with asyncio.timeout(timeout):
            check_url_host(delivery.url, allow_private)
            async with http.post(delivery.url, data=body, headers=headers, allow_redirects=False) as response:
                await _read_at_most(response.content, RESPONSE_LIMIT)
                response.close()  # what is left of the answer is not read
                return Outcome(200 <= response.status < 300, f"HTTP {response.status}")
    except asyncio.TimeoutError:
        return Outcome(False, f"no answer within {timeout:g}s")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError):
            return Outcome(False, "connection refused")
        return Outcome(False, _first_line(exc.os_error) or "connection failed")
    except (aiohttp.ClientError, OSError) as exc:  # includes PrivateAddress raised before connecting
        return Outcome(False, _first_line(exc) or type(exc).__name__)


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> None:
    """Read an answer to its end or to `limit` bytes, whichever comes first (a receiver may expect to be read)."""
    while limit > 0 and (chunk := await content.read(limit)):
        limit -= len(chunk)


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "strerror", None) or str(exc)).strip().splitlines()
    return text[0] if text else ""


async def _mail(delivery: Claimed, smtp: SMTPServer | None, timeout: float) -> Outcome:
    if smtp is None:
        return Outcome(False, "e-mail is not set up (TERESA_SMTP_URL)", retry=False)
    to = email_address(delivery.url)
    if to is None:  # stored before targets were checked this strictly
        return Outcome(False, "not one e-mail address with a full domain; add one target per address", retry=False)
    event = json.loads(delivery.payload)
    message = email.message.EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    release = f" {event['release']}" if event.get("release") else ""
    message["Subject"] = f"[teresa] {event['app']}{release}: {event['event']}"
    message.set_content("".join(f"{key}: {event.get(key)}\n" for key in ("app", "event", "release", "who", "when",
                                                                          "reason")))
    try:
        await asyncio.to_thread(_smtp_send, smtp, message, to, timeout)
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(False, f"SMTP: {_first_line(exc) or type(exc).__name__}")
    return Outcome(True, "sent by e-mail")


def _smtp_send(smtp: SMTPServer, message: email.message.EmailMessage, to: str, timeout: float) -> None:
    client: smtplib.SMTP
    if smtp.security == "ssl":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    with client:
        if smtp.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password)
        client.send_message(message, to_addrs=[to])  # the envelope: that one address, whatever the headers say
