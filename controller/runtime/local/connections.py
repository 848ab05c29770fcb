"""The router's client connections: at most so many per client address, and headers on time.

Without limits a few clients trickling a byte at a time (slowloris) would each
hold a connection for ever, and one address could hold any number of them. The
router admits a connection only while its address holds fewer than
`max_per_address` (over the cap it answers BUSY and closes), and closes a
connection whose next request's headers have not all arrived `header_timeout`
seconds after it was opened or after the previous response.
"""

from __future__ import annotations

from collections import Counter

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: 58\r\n\r\nToo many connections from your address; close some first.\n")


class Connections:
    """The limits, and the live count of connections per address."""

    def __init__(self, header_timeout: float, max_per_address: int):
        self.header_timeout = header_timeout
        self.max_per_address = max_per_address
        self.per_address: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        if self.per_address[address] >= self.max_per_address:
            return False
        self.per_address[address] += 1
        return True

    def leave(self, address: str) -> None:
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]
