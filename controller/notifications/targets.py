"""Where a notification may go: http(s) URLs to public addresses, or `email:ADDRESS` with SMTP set up.

Teresa's server sits inside the operator's network, so a URL a user gives it is
a way in (SSRF): addresses that are not globally routable — loopback,
link-local (cloud metadata), private, shared, multicast, and the IPv6 prefixes
that lead to an IPv4 address through a translator or relay — are refused, when
the target is added and again at each delivery (the name may resolve elsewhere
by then), unless the operator sets TERESA_NOTIFICATIONS_ALLOW_PRIVATE. A refusal
never says what a name resolved to: that would make the check a way to look up
the operator's internal names.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from core.commands import CommandError, shown

EMAIL_PREFIX = "email:"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# One addr-spec: a dot-atom local part (no commas, quotes, groups or display names) at a domain of two labels
# or more, the last not a number.
EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+(?=[A-Za-z0-9-]*[A-Za-z]){_LABEL}")
MAX_URL = 2000
MASK = "***"
# Prefixes whose addresses reach an IPv4 address through a translator or a relay Teresa cannot see (IPv4-
# compatible and -translated, NAT64's well-known and local-use prefixes, 6to4, Teredo) and the deprecated
# site-local range: refused whatever they embed. Python's `is_global` misses some of them, or not, by patch release.
REFUSED_V6 = tuple(ipaddress.IPv6Network(net) for net in (
    "::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "fec0::/10"))


class PrivateAddress(OSError):
    """A notification URL leads to an address the operator has not allowed."""


def is_email(url: str) -> bool:
    return url.startswith(EMAIL_PREFIX)


def email_address(url: str) -> str | None:
    """The one address of an `email:` target, or None when it is not exactly one fully qualified address."""
    address = url.removeprefix(EMAIL_PREFIX)
    fits = len(address) <= 254 and len(address.rpartition("@")[0]) <= 64  # RFC 5321's limits
    return address if is_email(url) and fits and EMAIL.fullmatch(address) else None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """May a notification go to `ip`? An IPv4-mapped address is its IPv4 address (a dual-stack socket goes there)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if any(ip in net for net in REFUSED_V6):
            return False
    return ip.is_global and not ip.is_multicast


def check_address(host: str, address: str, allow_private: bool) -> None:
    """PrivateAddress unless `address` (what `host` resolved to) is public; the sentence does not name it."""
    if not allow_private and not is_public(ipaddress.ip_address(address.split("%", 1)[0])):
        raise PrivateAddress(f"{shown(host, limit=100)} is not a public address; Teresa delivers notifications "
                             "to public addresses only (the operator can allow others with "
                             "TERESA_NOTIFICATIONS_ALLOW_PRIVATE)")


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_url_host(url: str, allow_private: bool) -> None:
    """At delivery: an IP literal never reaches the resolver (aiohttp skips it), so check it here."""
    host = urlsplit(url).hostname or ""
    if _ip_literal(host):
        check_address(host, host, allow_private)


def validate(url: str, *, allow_private: bool, smtp_configured: bool) -> str:
    """The target as stored, or CommandError saying what is wrong with it (resolves the host name)."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise CommandError(f"the URL is longer than {MAX_URL} characters; use a shorter one.")
    if is_email(url):
        if email_address(url) is None:
            raise CommandError(f"'{shown(url.removeprefix(EMAIL_PREFIX))}' is not one e-mail address with a full "
                               "domain; add one target per address, like email:ops@example.com.")
        if not smtp_configured:
            raise CommandError("this Teresa sends no e-mail (the operator has not set TERESA_SMTP_URL); "
                               "use an https:// URL.")
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"'{shown(url)}' is not an http(s) URL or email:ADDRESS; "
                           "write it like https://hooks.example.com/teresa.")
    if parts.username or parts.password:
        raise CommandError("put no user or password in the URL; verify the X-Teresa-Signature header instead.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise CommandError(f"the host name {shown(parts.hostname)} cannot be resolved; check the URL.") from None
    try:
        for info in infos:
            check_address(parts.hostname, str(info[4][0]), allow_private)
    except PrivateAddress as exc:
        raise CommandError(str(exc) + ".") from None
    return url


def masked(url: str) -> str:
    """A target as the audit log keeps it: where it goes, its user, path and query (tokens, often) as ***."""
    if is_email(url):
        return url.strip()
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return MASK
    user, _, host = parts.netloc.rpartition("@")
    if not parts.scheme or not host:
        return MASK
    rest = f"/{MASK}" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{MASK + '@' if user else ''}{host}{rest}"


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to a private address (checked per connection)."""

    def __init__(self, allow_private: bool) -> None:
        self.inner = DefaultResolver()
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            check_address(host, result["host"], self.allow_private)
        return results

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True)
class SMTPServer:
    """TERESA_SMTP_URL: smtp://, smtp+starttls:// or smtps://[USER:PASSWORD@]HOST[:PORT][?from=ADDRESS]."""

    host: str
    port: int
    security: str  # "", "starttls", "ssl"
    username: str
    password: str
    sender: str

    def __repr__(self) -> str:
        return f"SMTPServer({self.host}:{self.port}, {self.security or 'plain'})"


SMTP_SCHEMES = {"smtp": ("", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}


def parse_smtp_url(url: str) -> SMTPServer:
    parts = urlsplit(url)
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise ValueError("TERESA_SMTP_URL is not smtp://, smtp+starttls:// or smtps://HOST[:PORT][?from=ADDRESS]")
    security, default_port = SMTP_SCHEMES[parts.scheme]
    query: dict[str, Any] = parse_qs(parts.query)
    return SMTPServer(host=parts.hostname, port=parts.port or default_port, security=security,
                      username=unquote(parts.username or ""), password=unquote(parts.password or ""),
                      sender=(query.get("from") or [f"teresa@{socket.getfqdn()}"])[0])
