"""Password rules and bcrypt hashing. Hashing is slow on purpose: it runs on small pools of its own.

A flood of password attempts then waits for bcrypt threads instead of taking
every worker of the event loop's default executor, which the database calls and
/readyz need. Each door (SSH, the dashboard, and the commands that set a
password) has its own two threads: a flood at one door never queues another's
checks.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, get_args

import bcrypt

from core.commands import CommandError

MIN_LENGTH = 8
MAX_BYTES = 72  # bcrypt's limit
Door = Literal["ssh", "dashboard", "commands"]
BCRYPT_THREADS: dict[Door, ThreadPoolExecutor] = {
    door: ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"bcrypt-{door}") for door in get_args(Door)}


def from_stdin(data: bytes) -> str:
    """The password sent on stdin: one line, its trailing newline dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("the password on stdin is not UTF-8 text; send it as plain text.") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise CommandError("no password on stdin; send it there, like: echo 'secret-password' | ssh ... passwd")
    if "\n" in text or any(ord(c) < 32 for c in text):
        raise CommandError("the password contains line breaks or control characters; send a single line.")
    if len(text) < MIN_LENGTH:
        raise CommandError(f"the password is too short; use at least {MIN_LENGTH} characters.")
    if len(text.encode()) > MAX_BYTES:
        raise CommandError(f"the password is longer than {MAX_BYTES} bytes; use a shorter one.")
    return text


async def hashed(password: str) -> str:
    """`hash_password` on the commands' bcrypt pool."""
    return await asyncio.get_running_loop().run_in_executor(BCRYPT_THREADS["commands"], hash_password, password)


async def matches(password: str, hashed: str | None, *, door: Door) -> bool:
    """`check_password` on this door's bcrypt pool."""
    return await asyncio.get_running_loop().run_in_executor(BCRYPT_THREADS[door], check_password, password, hashed)


def stamp(hashed: str | None) -> str:
    """What a session made with this password keeps of it: a new password (a new salt) changes it; "" for none."""
    return hashlib.sha256(hashed.encode()).hexdigest() if hashed else ""


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def check_password(password: str, hashed: str | None) -> bool:
    encoded = password.encode()
    if not hashed or len(encoded) > MAX_BYTES:
        # Spend the same time as a real check so timing does not reveal unknown users.
        bcrypt.checkpw(b"x", DUMMY_HASH)
        return False
    return bcrypt.checkpw(encoded, hashed.encode())


DUMMY_HASH = bcrypt.hashpw(b"not-a-password", bcrypt.gensalt())
