"""Teresa's SSH front door: authentication, then a command or a git push."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import uuid
from typing import Any

import asyncssh

from core import log as logging
from core import metrics
from core.commands import Actor, CommandError, Terminal, execute, split_command_line
from core.errors import internal_error
from controller.platform import Platform
from core.services import Services
from gitreceiver import flow_control
from gitreceiver.git_service import GitService
from gitreceiver.hostkey import load_host_key
from gitreceiver.logins import LoginAudit
from keys.auth import SessionRevoked, actor_for_key, current_actor, password_login
from keys.ratelimit import LoginLimiter, login_limiter
from keys.sshkeys import fingerprint, too_weak

log = logging.get(__name__)
BARE_LF = re.compile(rb"(?<!\r)\n")

USAGE = """\
Hi {email}! This is Teresa; it gives no shell.
  ssh -p {port} git@{host} help          lists the commands
  git push teresa main                   deploys an app
"""


class AuthServer(asyncssh.SSHServer):
    """One per connection. Identity is decided by the last auth attempt, never a probe.

    asyncssh calls validate_public_key twice per key: for the unsigned probe and
    for the signed request, and it checks the signature only after we return.
    So every callback first forgets any earlier candidate, and the identity is
    read only in auth_completed, which follows the callback of the attempt that
    succeeded. An unsigned probe of someone else's key followed by a password
    login therefore authenticates the password's owner, or nobody.

    Once authenticated, a connection lives at most TERESA_SSH_SESSION_MAX_SECONDS;
    what it may do is read again from the database at each command (SSHFrontDoor).
    """

    def __init__(self, services: Services, limiter: LoginLimiter, logins: LoginAudit):
        self.services = services
        self.limiter = limiter
        self.logins = logins
        self.last_failure: tuple[str, str, str] | None = None  # (method, user, credential) for the audit log
        self.conn: asyncssh.SSHServerConnection | None = None
        self.address = "?"
        self.candidate: Actor | None = None
        self.unknown_key = False
        self.authenticated = False
        self.expiry: asyncio.TimerHandle | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.address = (conn.get_extra_info("peername") or ("?",))[0]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        if not self.authenticated and self.unknown_key:
            self.limiter.unknown_key(self.address)
        if not self.authenticated and self.last_failure is not None:
            method, user, credential = self.last_failure
            self.logins.failed(user=user, address=self.address, method=method, credential=credential)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.candidate = None
        if self.limiter.unknown_key_blocked(self.address):
            return False
        if too_weak(key):
            log.info("login_refused", method="publickey", address=self.address, reason="rsa key too short")
            return False
        actor = await actor_for_key(self.services.db, fingerprint(key))
        if actor is None:
            self.unknown_key = True
            self.last_failure = ("publickey", username, fingerprint(key))
            metrics.auth_failures_total.labels(method="publickey").inc()
            return False
        self.candidate = actor
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        self.candidate = None
        login = await password_login(self.services.db, self.limiter, door="ssh", address=self.address,
                                     email=username, password=password)
        if login.refused:
            log.warning("login_refused", method="password", address=self.address, user=username, reason=login.refused)
            return False
        if login.actor is None:
            self.last_failure = ("password", username.lower(), "password")
            metrics.auth_failures_total.labels(method="password").inc()
            log.info("login_failed", method="password", address=self.address, user=username)
            return False
        self.candidate = login.actor
        return True

    def auth_completed(self) -> None:
        assert self.conn is not None and self.candidate is not None
        self.authenticated = True
        actor = dataclasses.replace(self.candidate, address=self.address)
        self.conn.set_extra_info(teresa_actor=actor)
        lifetime = self.services.settings.ssh_session_max_seconds
        self.expiry = asyncio.get_running_loop().call_later(lifetime, self._expire)
        method = "publickey" if actor.key_fingerprint else "password"
        log.info("login", user=actor.email, address=self.address, method=method)
        self.logins.succeeded(actor.who, method)

    def _expire(self) -> None:
        assert self.conn is not None and self.candidate is not None
        log.info("ssh_session_expired", user=self.candidate.email, address=self.address)
        self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "This connection reached its maximum lifetime "
                             "(TERESA_SSH_SESSION_MAX_SECONDS); reconnect to go on.")


def terminal_of(process: asyncssh.SSHServerProcess[bytes]) -> Terminal | None:
    kind = process.get_terminal_type()
    if kind is None:
        return None
    columns, rows, *_ = process.get_terminal_size()
    return Terminal(kind, columns, rows)


class ChannelInput:
    """The session's stdin. With a terminal (`ssh -t`) the client sends keys, not a stream:
    Enter is CR and Ctrl-D is a byte, so `read` turns CR into LF and ends at Ctrl-D."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes]):
        self.process = process
        self.terminal = terminal_of(process)

    async def chunk(self) -> bytes | Terminal:
        try:
            return bytes(await self.process.stdin.read(65536))
        except asyncssh.TerminalSizeChanged as change:
            self.terminal = Terminal(self.terminal.type if self.terminal else "", change.width, change.height)
            return self.terminal

    async def read(self, limit: int) -> bytes:
        data = bytearray()
        while (chunk := await self.chunk()) != b"":
            if isinstance(chunk, Terminal):
                continue
            if self.terminal is not None:
                chunk, eof, _ = chunk.replace(b"\r", b"\n").partition(b"\x04")
                data += chunk
                if eof:
                    break
            else:
                data += chunk
            if len(data) > limit:
                raise CommandError(f"stdin is larger than {limit} bytes; send less.")
        return bytes(data)


class ChannelOutput:
    """Text to the client; to a terminal, a bare LF becomes CRLF as a server-side tty would make it."""

    def __init__(self, stream: Any, terminal: bool = False):
        self.stream = stream
        self.terminal = terminal

    async def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if self.terminal:
            data = BARE_LF.sub(b"\r\n", data)
        self.stream.write(data)
        await self.stream.drain()


class SSHFrontDoor:
    """The SSH listener and what each session runs."""

    def __init__(self, services: Platform, limiter: LoginLimiter | None = None, git: GitService | None = None):
        self.services = services
        self.limiter = limiter or login_limiter(services.settings)
        self.logins = LoginAudit(services.db)
        self.git = git  # gitreceiver's handler for git-receive-pack / git-upload-pack
        self.server: asyncssh.SSHAcceptor | None = None

    async def start(self) -> None:
        flow_control.install()
        settings = self.services.settings
        host, port = settings.ssh_addr
        host_key = load_host_key(settings)
        self.server = await asyncssh.create_server(
            lambda: AuthServer(self.services, self.limiter, self.logins), host, port,
            server_host_keys=[host_key],
            process_factory=self.session, encoding=None,
            allow_pty=True, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
            kbdint_auth=False, login_timeout=settings.login_timeout, keepalive_interval=30,
        )
        # What a user's first `ssh` asks them to accept: they can compare it with this.
        log.info("ssh_listening", address=f"{host}:{self.port}", host_key=host_key.get_fingerprint())

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]  # (host, port, ...) of the first listening socket
        return port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await self.logins.drain()

    async def session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Run the session's command; stop it when the client goes away (logs -f, a push, run)."""
        actor: Actor = process.get_extra_info("teresa_actor")
        metrics.ssh_sessions_total.inc()
        try:  # who this connection logged in as may have been deleted, lost its key or its admin flag since
            actor = await self.services.db.run(lambda session: current_actor(session, actor))
        except SessionRevoked as exc:
            log.info("ssh_session_revoked", user=actor.email, reason=str(exc))
            process.stderr.write(f"error: {exc}\n".encode())
            process.exit(1)
            with contextlib.suppress(asyncio.TimeoutError):  # the client has the sentence: now hang up
                await asyncio.wait_for(process.channel.wait_closed(), 10)
            process.channel.get_connection().close()
            return
        tty = process.get_terminal_type() is not None
        work = asyncio.create_task(self._dispatch(process, actor, ChannelOutput(process.stderr, tty)))
        closed = asyncio.create_task(process.channel.wait_closed())
        with metrics.ssh_sessions_active.track_inprogress():
            await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
            return
        try:
            status = work.result()
        except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged):
            status = 1
        except (BrokenPipeError, ConnectionError, asyncssh.DisconnectError, asyncio.CancelledError):
            return
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("session_failed", user=actor.email, reference=reference)
            process.stderr.write(internal_error(reference).encode())
            status = 1
        try:
            process.exit(status)
        except (BrokenPipeError, OSError):
            pass

    async def _dispatch(self, process: asyncssh.SSHServerProcess[bytes], actor: Actor, err: ChannelOutput) -> int:
        if process.subsystem:
            await err.write(f"error: the {process.subsystem} subsystem is not supported; Teresa runs commands only.\n")
            return 1
        if process.command is None:
            host, port = self.services.settings.public_ssh_addr
            await ChannelOutput(process.stdout, err.terminal).write(USAGE.format(email=actor.email, host=host, port=port))
            return 0
        try:
            argv = split_command_line(process.command)
        except CommandError as exc:
            await err.write(f"error: {exc}\n")
            return 1
        if argv and argv[0] in ("git-receive-pack", "git-upload-pack") and self.git is not None:
            return await self.git(process, actor, argv)
        return await execute(argv, actor, self.services, ChannelInput(process),
                             ChannelOutput(process.stdout, err.terminal), err, remote=True)
