"""Heroku-style build output: `-----> step`, sub-lines indented 7 spaces, every line flushed."""

from __future__ import annotations

import re
import sys
import threading
from typing import IO, Mapping

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|DSN", re.IGNORECASE)
URL_PASSWORD = re.compile(rb"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.IGNORECASE)
MASK = b"****"


class Output:
    """Writes whole lines to a binary stream, flushing each; masks secret config values."""

    def __init__(self, stream: IO[bytes] | None = None, secrets: Mapping[str, str] | None = None) -> None:
        self.stream: IO[bytes] = stream or sys.stdout.buffer
        self.lock = threading.Lock()
        values = {v for k, v in (secrets or {}).items() if SECRET_NAME.search(k) and len(v) >= 4}
        self.secrets = sorted((v.encode() for v in values), key=len, reverse=True)

    def mask(self, line: bytes) -> bytes:
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return URL_PASSWORD.sub(rb"\g<head>" + MASK + b"@", line)

    def raw(self, line: bytes) -> None:
        if not line.endswith(b"\n"):
            line += b"\n"
        with self.lock:
            self.stream.write(self.mask(line))
            self.stream.flush()

    def step(self, text: str) -> None:
        self.raw(f"-----> {text}".encode())

    def info(self, text: str) -> None:
        self.raw(f"       {text}".encode())

    def error(self, text: str) -> None:
        self.raw(f" !     {text}".encode())
