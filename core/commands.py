"""The command table: every user-facing command, defined once.

A command is reached over SSH as the authenticated user and locally (`teresa
NAME ...`) as the superuser. Handlers write to `inv.out`; a `CommandError`
becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, NoReturn, Protocol, TypeVar

from core import audit
from core import log as logging
from core.errors import UserError, internal_error
# Defined in core.errors (which the slugbuilder and slugrunner import cheaply); re-exported for the commands.
from core.errors import CommandError as CommandError, PermissionDenied as PermissionDenied, shown as shown
from core.errors import printable
from core.services import Services

log = logging.get(__name__)

MAX_COMMAND_LINE = 64 * 1024
MAX_ARGUMENTS = 256

ANYONE = "any user"
ADMIN = "admins"
APP_TEAM = "members of the app's team, and admins"
TEAM = "members of the team, and admins"
LOCAL = "the operator, locally on the server host"


@dataclass(frozen=True)
class Actor:
    """Who runs a command. The local superuser has no user row."""

    email: str
    user_id: int | None = None
    is_admin: bool = False
    superuser: bool = False
    key_fingerprint: str | None = None
    address: str = ""  # the client's address, when it came over the network
    via: str = ""      # how a session other than SSH was opened (the dashboard's), for the audit log

    @classmethod
    def local(cls) -> "Actor":
        return cls(email="operator@localhost", is_admin=True, superuser=True)

    @property
    def who(self) -> audit.Who:
        """The actor as the audit log records it: from where, with which credential."""
        if self.superuser:
            return audit.Who(self.email, audit.LOCAL_ADDRESS, "local")
        return audit.Who(self.email, self.address, self.via or self.key_fingerprint or "password")


class Output(Protocol):
    async def write(self, text: str) -> None: ...


@dataclass(frozen=True)
class Terminal:
    """The client's terminal, when it asked for one (`ssh -t`): its type ($TERM) and size."""

    type: str
    columns: int
    rows: int


class Input(Protocol):
    @property
    def terminal(self) -> Terminal | None:
        """The client's terminal, or None when it has none (a pipe, a script, the control socket)."""

    async def read(self, limit: int) -> bytes:
        """Read stdin up to EOF; raise CommandError if more than `limit` bytes arrive."""

    async def chunk(self) -> bytes | Terminal:
        """The next piece of stdin as it arrives (b"" at its end), or the terminal's new size."""


S = TypeVar("S", bound=Services)


@dataclass
class Invocation(Generic[S]):
    """One run of a command. `S` is what the command needs: `Services`, or the controller's `Platform`."""

    command: "Command"
    args: argparse.Namespace
    actor: Actor
    services: S
    stdin: Input
    out: Output
    err: Output
    remote: bool

    async def print(self, text: str = "") -> None:
        await self.out.write(text + "\n")

    async def print_json(self, value: Any) -> None:
        await self.print(json.dumps(value, indent=2, sort_keys=True, default=str))

    async def print_listing(self, data: Any, empty: str, headers: list[str], rows: list[list[Any]]) -> None:
        """A list command's output: JSON with --json, else a table, or `empty` when there are no rows."""
        if getattr(self.args, "json", False):
            await self.print_json(data)
        elif not rows:
            await self.print(empty)
        else:
            await self.print_table(headers, rows)

    async def print_table(self, headers: list[str], rows: list[list[Any]]) -> None:
        """Rows of user-supplied values (names, emails, the audit log's records) with control characters escaped."""
        cells = [headers] + [["" if v is None else printable(str(v)) for v in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        for row in cells:
            await self.print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


Handler = Callable[[Invocation[Any]], Awaitable[int | None]]
AuditDetails = Callable[[argparse.Namespace], dict[str, Any]]


def all_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """What the audit log keeps of a command line by default: every argument but the app and --json.

    A command whose arguments carry secrets (config values) gives its own `audit_details`.
    """
    return {k: v for k, v in sorted(vars(args).items()) if k not in ("app", "json")}


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass
class Command:
    name: str
    summary: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    access: str = ANYONE
    example: str = ""
    stdin: str = ""
    local_only: bool = False
    json: bool = False
    mutating: bool = False  # changes state: every run is recorded in the audit log
    audit_details: AuditDetails = all_arguments
    parser: "QuietParser" = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.parser = QuietParser(prog=self.name, description=self.summary, add_help=False, allow_abbrev=False)
        for a in self.args:
            self.parser.add_argument(*a.flags, **a.options)
        if self.json:
            self.parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    @property
    def usage(self) -> str:
        return " ".join(self.parser.format_usage().split())[len("usage: "):]


class QuietParser(argparse.ArgumentParser):
    """argparse that raises CommandError instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{self.prog}: {message}; usage: {' '.join(self.format_usage().split())[7:]}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise CommandError(message or f"{self.prog}: bad arguments")


TABLE: dict[str, Command] = {}
APP = Arg(("app",), {"metavar": "APP", "help": "the app's name"})


def command(name: str, summary: str, *args: Arg, **options: Any) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in TABLE:
            raise ValueError(f"command {name} is defined twice")
        TABLE[name] = Command(name, summary, handler, tuple(args), **options)
        return handler

    return register


def split_command_line(line: str) -> list[str]:
    """Split an SSH command line like a POSIX shell would, without running one."""
    if len(line.encode("utf-8", "surrogateescape")) > MAX_COMMAND_LINE:
        raise CommandError(f"the command line is longer than {MAX_COMMAND_LINE} bytes; shorten it.")
    if any(ord(c) < 32 and c not in "\t" for c in line):
        raise CommandError("the command line contains control characters; remove them.")
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"the command line could not be parsed ({exc}); check its quoting.") from None
    if len(argv) > MAX_ARGUMENTS:
        raise CommandError(f"too many arguments ({len(argv)}); the limit is {MAX_ARGUMENTS}.")
    return argv


def lookup(name: str, remote: bool) -> Command:
    cmd = TABLE.get(name)
    if cmd is None or (remote and cmd.local_only):
        raise CommandError(f"unknown command '{shown(name)}'; run 'help' to list the commands.")
    return cmd


def parse(argv: list[str], remote: bool) -> tuple[Command, argparse.Namespace]:
    if not argv:
        raise CommandError("no command given; run 'help' to list the commands.")
    cmd = lookup(argv[0], remote)
    if argv[1:2] in (["-h"], ["--help"]):
        return TABLE["help"], argparse.Namespace(command=cmd.name, json=False)
    return cmd, cmd.parser.parse_args(argv[1:])


def visible_commands(remote: bool) -> list[Command]:
    return sorted((c for c in TABLE.values() if not (remote and c.local_only)), key=lambda c: c.name)


async def execute(argv: list[str], actor: Actor, services: Services, stdin: Input, out: Output, err: Output,
                  remote: bool) -> int:
    """Run one command line; returns the exit status. User errors become one line on stderr."""
    try:
        cmd, args = parse(argv, remote)
        inv = Invocation(cmd, args, actor, services, stdin, out, err, remote)
        if not cmd.mutating:
            return await cmd.handler(inv) or 0
        return await _audited(inv)
    except UserError as exc:
        await err.write(f"error: {shown(str(exc), limit=2000)}\n")
        return exc.exit_status
    except Exception:
        reference = uuid.uuid4().hex[:12]
        log.exception("command_failed", command=shown(argv[0]) if argv else "", reference=reference)
        await err.write(internal_error(reference))
        return 1


async def _audited(inv: Invocation[Any]) -> int:
    """Run a mutating command inside its audit record; the outcome is the command's."""
    app = getattr(inv.args, "app", None)
    entry = audit.Entry(inv.actor.who, inv.command.name, app=app[:63] if isinstance(app, str) else None,
                        details=inv.command.audit_details(inv.args))
    async with audit.recording(inv.services.db, entry):
        try:
            status = await inv.command.handler(inv) or 0
        except PermissionDenied:
            entry.outcome = audit.DENIED
            raise
        entry.outcome = audit.SUCCEEDED if status == 0 else audit.FAILED
        return status
