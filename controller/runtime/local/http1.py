"""Just enough HTTP/1.1 for the router: message heads, and where a body ends.

A body is never held whole nor parsed: the router passes it on piece by piece as it
arrives, and only counts (a length) or reads its chunk size lines to find its end.
Anything ambiguous
(two differing Content-Lengths, Content-Length with Transfer-Encoding, a header
line without a colon) is refused as a bad request: a proxy that guesses where a
body ends invites request smuggling.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

CHUNK = 256 * 1024
CRLF = b"\r\n"
END_OF_HEAD = b"\r\n\r\n"
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection",
})
FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
# What a Connection header can never make hop-by-hop: taking these out would leave the body the router framed
# unframed for the app (read as a request of its own: smuggled), or the request without the host it was routed by.
NEVER_HOP_BY_HOP = frozenset({b"content-length", b"transfer-encoding", b"host"})
NO_OPTIONS: frozenset[bytes] = frozenset()
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
TOKEN = re.compile(_TOKEN)
# A chunk size (up to 2^48 - 1), its extensions (RFC 9112 7.1.1), CRLF.
SIZE_LINE = re.compile(rb"([0-9a-fA-F]{1,12})(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
                       + rb'|"(?:[^"\\\r\n\x00-\x08\x0a-\x1f\x7f]|\\[^\r\n])*"))?)*\r\n')
TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")  # a request target: no spaces or control bytes
HEADER_LINES = re.compile(rb"(?:" + _TOKEN + rb":[^\r\n]*\r\n)*")
# A Host header: an RFC 3986 reg-name or IP literal, and a port of digits.
HOST = re.compile(rb"(?:(?:[A-Za-z0-9._~!$&'()*+,;=-]+|%[0-9A-Fa-f]{2})*|\[(?P<ipv6>[0-9A-Fa-f:.]+)\]"
                  rb"|\[v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+\])(?::[0-9]{1,5})?")
REASONS = {400: "Bad Request", 404: "Not Found", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 503: "Service Unavailable"}


class BadMessage(ValueError):
    """A message head or body framing this proxy will not pass on."""


class Head:
    """A request or response head as sent: `first` is its request or status line, `raw` the whole of it."""

    __slots__ = ("raw", "first", "headers", "index", "version", "_options")

    def __init__(self, raw: bytes, first: bytes, headers: list[tuple[bytes, bytes]],
                 index: dict[bytes, bytes]) -> None:
        self.raw = raw
        self.first = first
        self.headers = headers
        self.index = index  # lower-cased names of the headers present, to their (last) value
        self.version = b""
        self._options: frozenset[bytes] | None = None

    def get(self, name: bytes, default: bytes = b"") -> bytes:
        return self.index.get(name, default)

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]

    def options(self) -> frozenset[bytes]:
        """What its Connection headers list (all of them), lower-cased."""
        if self._options is None:
            self._options = NO_OPTIONS if b"connection" not in self.index else frozenset(
                t.strip().lower() for value in self.values(b"connection") for t in value.split(b",")) - {b""}
        return self._options

    @property
    def keep_alive(self) -> bool:
        options = self.options()
        return b"keep-alive" in options if self.version == b"HTTP/1.0" else b"close" not in options

    def has_any(self, names: frozenset[bytes]) -> bool:
        return not names.isdisjoint(self.index)

    def not_forwarded(self) -> frozenset[bytes]:
        """Hop-by-hop headers: the standard ones and those the Connection header names, but never one that
        frames or routes the message (RFC 9110 7.6.1)."""
        named = self.options() - NEVER_HOP_BY_HOP
        return HOP_BY_HOP | named if named else HOP_BY_HOP


@dataclass(frozen=True)
class Framing:
    """Where a body ends: `length` bytes, or chunked, or (responses only) at the connection's end."""
    length: int = 0
    chunked: bool = False
    until_close: bool = False


NO_BODY = Framing()


def parse_head(raw: bytes) -> Head:
    """A head ending in an empty line; every header line a token, a colon and a value without CR or LF."""
    first, _, block = raw[:-2].partition(CRLF)
    if not HEADER_LINES.fullmatch(block):
        raise BadMessage("malformed header line")
    headers: list[tuple[bytes, bytes]] = []
    index: dict[bytes, bytes] = {}
    for line in block.split(CRLF)[:-1]:
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        headers.append((name, value))
        index[name.lower()] = value
    return Head(raw, first, headers, index)


def parse_request(raw: bytes) -> tuple[Head, bytes, bytes]:
    """The head, method and target of a request."""
    head = parse_head(raw)
    parts = head.first.split(b" ")
    if (len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not TARGET.fullmatch(parts[1])
            or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0")):
        raise BadMessage("malformed request line")
    if len(head.values(b"host")) > 1:  # which one routes, which one the app reads? (RFC 9112 3.2)
        raise BadMessage("more than one Host header")
    head.version = parts[2]
    return head, parts[0], parts[1]


def parse_response(raw: bytes) -> tuple[Head, int]:
    head = parse_head(raw)
    version, _, rest = head.first.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise BadMessage("malformed status line")
    head.version = version
    return head, int(code)


def valid_host(host: bytes) -> bool:
    """Whether a Host header is a host name or address with an optional port, as RFC 3986 spells them."""
    match = HOST.fullmatch(host)
    if match is None or match["ipv6"] is None:
        return match is not None
    try:
        ipaddress.IPv6Address(match["ipv6"].decode())
    except ValueError:
        return False
    return True


def request_framing(head: Head) -> Framing:
    return _declared(head) or NO_BODY


def response_framing(head: Head, status: int, method: bytes) -> Framing:
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return NO_BODY
    framing = _declared(head)
    return Framing(until_close=True) if framing is None else framing


def _declared(head: Head) -> Framing | None:
    if not head.has_any(FRAMING_HEADERS):
        return None
    encoding = head.get(b"transfer-encoding")
    lengths = set(head.values(b"content-length"))
    if encoding:
        if lengths or encoding.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
            raise BadMessage("ambiguous body framing")
        return Framing(chunked=True)
    if not lengths:
        return None
    if len(lengths) > 1 or not (value := lengths.pop()).isdigit() or len(value) > 18:
        raise BadMessage("bad Content-Length")
    return Framing(length=int(value))


class LengthEnd:
    """Finds where a body of a Content-Length ends (or, with no length, one that ends with the connection)."""

    def __init__(self, length: int | None) -> None:
        self.left = length
        self.done = length == 0

    @property
    def until_close(self) -> bool:
        return self.left is None

    def feed(self, piece: bytes, payload: list[bytes] | None = None) -> int:
        """How many bytes of `piece` belong to the body: all, unless the body ends inside it."""
        if self.left is None:
            used = len(piece)
        else:
            used = min(self.left, len(piece))
            self.left -= used
            self.done = self.left == 0
        if payload is not None:
            payload.append(piece[:used])
        return used

    def skip(self, count: int) -> None:
        """`count` bytes of the body have passed without being read (spliced)."""
        if self.left is not None:
            self.left -= count
            self.done = self.left == 0


class ChunkedEnd:
    """Finds where a chunked body ends in the pieces it arrives in, reading only its framing, and
    strictly (CRLF line ends, a CRLF after each chunk's data, well-formed sizes and extensions): a
    proxy that reads framing more leniently than the app behind it lets requests be smuggled past it."""

    until_close = False

    def __init__(self) -> None:
        self.left = 0  # data bytes of the current chunk still to come
        self.crlf = 0  # bytes of the CRLF after a chunk's data still to come
        self.line = b""  # the start of a size or trailer line cut by the end of a piece
        self.trailers = False
        self.done = False

    def feed(self, piece: bytes, payload: list[bytes] | None = None, *, until_data: bool = False) -> int:
        """How many bytes of `piece` belong to the body: all, unless the body ends inside it (or, with
        `until_data`, a chunk's data starts in it). With `payload`, the chunks' data is appended to it."""
        at, size = 0, len(piece)
        while at < size and not self.done:
            if self.left:
                if until_data:
                    return at
                step = min(self.left, size - at)
                if payload is not None:
                    payload.append(piece[at:at + step])
                at += step
                self.skip(step)
            elif self.crlf:
                step = min(self.crlf, size - at)
                if piece[at:at + step] != b"\r\n"[2 - self.crlf:2 - self.crlf + step]:
                    raise BadMessage("a chunk's data is not followed by CRLF")
                at, self.crlf = at + step, self.crlf - step
            else:
                newline = piece.find(b"\n", at)
                if newline < 0:
                    self.line += piece[at:]
                    if len(self.line) > 4096:
                        raise BadMessage("chunk size line too long")
                    return size
                line, self.line, at = self.line + piece[at:newline + 1], b"", newline + 1
                self._line(line)
        return at

    def skip(self, count: int) -> None:
        """`count` bytes of the current chunk's data have passed without being read (spliced)."""
        self.left -= count
        if not self.left:
            self.crlf = 2

    def _line(self, line: bytes) -> None:
        if self.trailers:
            if line == CRLF:
                self.done = True
            elif not HEADER_LINES.fullmatch(line):
                raise BadMessage("bad trailer line")
            return
        match = SIZE_LINE.fullmatch(line)
        if not match:
            raise BadMessage("bad chunk size")
        size = int(match.group(1), 16)
        self.trailers = size == 0
        self.left = size


BodyEnd = LengthEnd | ChunkedEnd


def body_end(framing: Framing) -> BodyEnd:
    if framing.chunked:
        return ChunkedEnd()
    return LengthEnd(None if framing.until_close else framing.length)


def passed_on(head: Head, *, chunked: bool, skip: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The headers of `head` a proxy passes on: not the hop-by-hop ones (nor `skip`), and for a chunked
    body its transfer codings as sent (gzip, chunked: the body is gzipped too)."""
    dropped = head.not_forwarded() | skip
    headers = [(name, value) for name, value in head.headers if name.lower() not in dropped]
    if chunked:
        headers.append((b"Transfer-Encoding", b", ".join(head.values(b"transfer-encoding"))))
    return headers


def render_head(first: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return first + CRLF + b"".join(name + b": " + value + CRLF for name, value in headers) + CRLF


def page(status: int, body: str, *, close: bool = False, content_type: str = "text/html") -> bytes:
    """A whole response made by the router itself."""
    data = body.encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
    return head.encode() + data
