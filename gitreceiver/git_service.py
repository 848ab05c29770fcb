"""`git push` and `git fetch` over SSH, served by dulwich in a worker thread.

The deploy decision is made in the update step, after the pack is stored and
before a ref moves: a failed build leaves every ref where it was. The app's
deploy lock is taken before the pack of any push that moves a ref is read, so a
second push is answered at once, through whichever replica it arrives.

The repository served is this replica's cache of the copy in storage
(core/repos.py): brought up to date before the refs are advertised, checked again
once the lock is held (a ref another replica moved meanwhile is refused, "fetch
first"), and published back to storage before the push is reported done.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
from dulwich.errors import GitProtocolError
from dulwich.objects import ObjectID
from dulwich.protocol import CAPABILITY_ATOMIC, CAPABILITY_SIDE_BAND_64K, SIDE_BAND_CHANNEL_DATA, SIDE_BAND_CHANNEL_PROGRESS, Protocol
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend, ReceivePackHandler, UploadPackHandler

from controller.controller import Controller
from controller.locks import DeployInProgress, DeployLockLost
from core import audit
from core import log as logging
from core import repos
from core.commands import Actor, CommandError, PermissionDenied
from core.config import Settings
from core.services import Services
from gitreceiver.bridge import ThreadStreams
from gitreceiver.packguard import PackGuard, PackRefused
from gitreceiver.pushed import PushedCommit
from keys import access

log = logging.get(__name__)

# TeresaReceivePack overrides private methods of dulwich's ReceivePackHandler (the hooks and
# _apply_pack) and sets `Protocol.recv`. They are checked against these versions only: a new
# dulwich must be read, tested (tests/gitreceiver/test_dulwich_guard.py) and added here.
DULWICH_VERSIONS = {"1.2.21"}
OVERRIDDEN = ("_receive_max_input_size", "_apply_pack", "_on_pre_receive", "_on_update", "_on_post_receive")


class UnsupportedDulwich(RuntimeError):
    pass


def check_dulwich(version: str | None = None) -> None:
    """Refuse to serve git with a dulwich whose private methods Teresa has not been checked against."""
    import dulwich

    found = version or ".".join(str(part) for part in dulwich.__version__)
    if found not in DULWICH_VERSIONS:
        raise UnsupportedDulwich(f"dulwich {found} is not one Teresa's git service was checked against "
                                 f"({', '.join(sorted(DULWICH_VERSIONS))}); install a checked version.")
    missing = [name for name in OVERRIDDEN if not callable(getattr(ReceivePackHandler, name, None))]
    if missing:
        raise UnsupportedDulwich(f"dulwich {found} has no ReceivePackHandler.{missing[0]}; install a checked version.")

DEPLOY_REFS = {b"refs/heads/main", b"refs/heads/master"}
ZERO = b"0" * 40
CANNOT_STORE = "the server cannot store your push right now; nothing was changed"
_DONE = object()
# A git session holds its thread for the whole push, build and release included, while the deploy
# itself needs the loop's default executor (database, storage, archive). Sessions therefore get
# threads of their own: on the default executor (cpu count + 4 workers) a few concurrent pushes
# would take every worker and wait forever for deploys that cannot get one.
SESSION_THREADS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="git-session")


class PushGate:
    """Runs in the handler's thread; talks to the controller on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, controller: Controller, app: str, actor: Actor, repo: Path,
                 settings: Settings, services: Services | None = None):
        self.loop = loop
        self.settings = settings
        self.controller = controller
        self.app = app
        self.actor = actor
        self.repo = repo
        self.handler: "TeresaReceivePack | None" = None
        self.lock = contextlib.AsyncExitStack()  # holds the app's deploy lock once taken
        self.started = time.monotonic()
        self.refusal: bytes | None = None  # why this push's deploy refs are refused
        self.busy: bytes | None = None  # set when another push holds the app's lock: every ref is refused
        self.task: asyncio.Task[str | None] | None = None
        self.closed = False  # set on the loop when the session ends: no deploy may start after that
        self.services = services  # with them, the repository is checked against and published to storage
        self.locked = False
        self.stale: set[bytes] = set()  # refs another replica moved since they were advertised
        self.lines: queue.Queue[Any] | None = None  # what the handler's thread relays to the client, once deploying

    def announce(self, line: str) -> None:
        """From the event loop: a line for the client among its deploy's output (nothing before the deploy)."""
        if self.lines is not None:
            self.lines.put(line)

    def _on_loop(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    async def _take_lock(self) -> str | None:
        """Take the app's deploy lock for the rest of the session; the holder's description if refused."""
        try:
            await self.lock.enter_async_context(self.controller.deploy_lock(self.app, self.actor))
        except DeployInProgress as exc:
            return exc.holder.describe()
        return None

    def progress(self, line: str) -> None:
        assert self.handler is not None
        if self.handler.has_capability(CAPABILITY_SIDE_BAND_64K):
            self.handler.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, line.encode("utf-8", "replace") + b"\n")

    def keepalive(self) -> None:
        assert self.handler is not None
        if self.handler.has_capability(CAPABILITY_SIDE_BAND_64K):
            # An empty band-1 packet, as git's own receive-pack sends (write_sideband skips empty data).
            self.handler.proto.write_pkt_line(bytes([SIDE_BAND_CHANNEL_DATA]))

    def before_pack(self, refs: list[RefUpdate]) -> None:
        """Every push that moves a ref takes the app's lock: the repository in storage has one writer."""
        if not refs:
            return
        holder = asyncio.run_coroutine_threadsafe(self._take_lock(), self.loop).result()
        if holder is not None:
            self.busy = b"deploy in progress"
            self.progress(f" !     {holder}; wait for it to finish, then push again.")
            return
        self.locked = True
        if self.services is not None:
            settings = self.services.settings
            _path, manifest = repos.sync(self.services.storage, settings.data_dir, self.app)
            self.stale = {ref for old, _new, ref in refs if manifest["refs"].get(ref.decode(), repos.ZERO) != old.decode()}

    def publish(self, status: list[tuple[bytes, bytes]], refs: list[RefUpdate]) -> list[tuple[bytes, bytes]]:
        """Write the refs that moved (and the packs they need) to storage, still under the app's lock; the refs'
        status, every one refused when the lock was lost (another server may be writing the repository)."""
        moved = {ref.decode(): new.decode() for _old, new, ref in refs if (ref, b"ok") in status}
        if not moved or not self.locked or self.services is None:
            return status
        if not self._on_loop(self.controller.locks.holds, self.app):
            self.progress(f" !     {DeployLockLost(self.app)}")
            return [status[0], *((ref, b"deploy lock lost") for ref, _ in status[1:])]
        settings = self.services.settings
        repos.publish(self.services.storage, settings.data_dir, self.app, moved)
        return status

    def refuse_deploys(self, reason: bytes, sentence: str) -> None:
        """Every deploy ref of this push is rejected with `reason`; `sentence` tells the user why."""
        if self.refusal is None:
            self.refusal = reason
            self.progress(sentence)

    def update(self, ref: bytes, old: bytes, new: bytes) -> bytes | None:
        branch = ref.decode("utf-8", "replace").removeprefix("refs/heads/")
        if self.busy:  # another push holds the app's lock: no ref of this one moves
            return self.busy
        if ref in self.stale:
            self.progress(f" !     {branch} was updated through another server since you fetched; "
                          "fetch, then push again.")
            return b"fetch first"
        if ref not in DEPLOY_REFS:
            if new != ZERO:
                self.progress(f"-----> Stored {branch}; not deployed (only main or master deploy).")
            return None
        if new == ZERO:
            return b"deleting the deploy branch is not allowed"
        if self.refusal:
            return self.refusal
        lines: queue.Queue[Any] = queue.Queue()
        self.lines = lines

        async def sink(line: str) -> None:
            lines.put(line)

        def start() -> asyncio.Task[str | None] | None:
            if self.closed:
                return None
            pushed = PushedCommit(self.repo, ref.decode(), new.decode(),
                                  max_source_bytes=self.settings.max_source_bytes,
                                  max_file_bytes=self.settings.max_file_bytes,
                                  archive_seconds=self.settings.build_timeout,
                                  received_seconds=time.monotonic() - self.started)
            self.task = asyncio.ensure_future(self.controller.deploy_push(self.app, self.actor, pushed, sink))
            self.task.add_done_callback(lambda _t: lines.put(_DONE))
            return self.task

        task = self._on_loop(start)
        if task is None:
            return b"client disconnected"
        self._relay(lines)
        reason = self._on_loop(task.result)  # raises CancelledError in this thread if the push was cancelled
        return reason.encode() if reason else None

    def _relay(self, lines: queue.Queue[Any]) -> None:
        while True:
            try:
                item = lines.get(timeout=self.settings.push_keepalive_seconds)
            except queue.Empty:
                self.keepalive()
                continue
            if item is _DONE:
                return
            self.progress(item)

    async def close(self) -> None:
        """Cancel a running deploy, wait until it has cleaned up (build stopped, outcome recorded), unlock."""
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=60)
        await self.lock.aclose()


RefUpdate = tuple[ObjectID, ObjectID, Ref]  # (old, new, ref) as the client asks for it


class TeresaReceivePack(ReceivePackHandler):
    def __init__(self, backend: DictBackend, args: list[str], proto: Protocol, gate: PushGate):
        super().__init__(backend, args, proto)
        self.gate = gate
        self.repo_path = gate.repo
        self.max_bytes = gate.settings.max_push_bytes
        self.max_file_bytes = gate.settings.max_file_bytes
        self.max_source_bytes = gate.settings.max_source_bytes
        gate.handler = self

    def _receive_max_input_size(self) -> int | None:
        return self.max_bytes

    def _apply_pack(self, refs: list[RefUpdate]) -> Iterator[tuple[bytes, bytes]]:
        deploys = [ref for _old, new, ref in refs if ref in DEPLOY_REFS]
        if self.has_capability(CAPABILITY_ATOMIC):
            if len(deploys) > 1:
                self.gate.refuse_deploys(b"atomic push of several deploy branches",
                                         " !     An atomic push may update one deploy branch (main or master); "
                                         "push them one at a time.")
            # dulwich runs the update hook of each ref in order and moves every ref only if all
            # are accepted: the deploy runs last, once every other ref has been accepted.
            refs = sorted(refs, key=lambda command: command[2] in DEPLOY_REFS)
        guard = PackGuard(max_file_bytes=self.max_file_bytes, max_total_bytes=4 * self.max_source_bytes)
        read, recv = self.proto.read, getattr(self.proto, "recv", None)
        self.proto.read = guard.wrap(read)
        if recv is not None:
            self.proto.recv = guard.wrap(recv)  # type: ignore[attr-defined]
        leftovers = _temporary_packs(self.repo_path)
        try:
            status = list(super()._apply_pack(refs))
        finally:
            self.proto.read = read
            if recv is not None:
                self.proto.recv = recv  # type: ignore[attr-defined]
        if status and status[0] == (b"unpack", b"ok"):
            status = self.gate.publish(status, refs)
        if status and status[0] != (b"unpack", b"ok"):  # no ref moved: say why, and reject each ref
            for partial in _temporary_packs(self.repo_path) - leftovers:  # dulwich leaves them on failure
                partial.unlink(missing_ok=True)
            status = [(b"unpack", self.unpack_failure(status[0][1], guard.refusal))]
            status += [(ref, status[0][1]) for _old, _new, ref in refs]
        return iter(status)  # dulwich lists it

    def unpack_failure(self, detail: bytes, refused: PackRefused | None) -> bytes:
        """The short reason for the client, the detail (which may name server paths) for the operator."""
        if refused is not None:
            self.gate.progress(f" !     {refused.sentence}")
            return refused.reason
        if b"maximum input size" in detail:
            self.gate.progress(f" !     This push is larger than the {self.max_bytes}-byte limit "
                               "(TERESA_MAX_PUSH_BYTES); push less at a time or ask the operator to raise it.")
            return b"push too large"
        if detail.startswith(b"[Errno"):
            log.error("push_not_stored", repo=str(self.repo_path), error=detail.decode("utf-8", "replace"))
            self.gate.progress(f" !     {CANNOT_STORE[0].upper()}{CANNOT_STORE[1:]}.")
            return b"server cannot store push"
        log.info("push_bad_pack", repo=str(self.repo_path), error=detail.decode("utf-8", "replace")[:500])
        return b"bad pack"

    def _on_pre_receive(self, client_refs: list[RefUpdate]) -> None:
        self.gate.before_pack(client_refs)

    def _on_update(self, ref_name: bytes, old_sha: bytes, new_sha: bytes) -> bytes | None:
        return self.gate.update(ref_name, old_sha, new_sha)

    def _on_post_receive(self, client_refs: list[RefUpdate]) -> None:
        return None


class GitService:
    def __init__(self, services: Services, controller: Controller):
        check_dulwich()
        self.services = services
        self.controller = controller
        self.pushes: set[asyncio.Task[Any]] = set()  # sessions of git-receive-pack in flight (for draining)
        self.gates: set[PushGate] = set()  # and their gates, to tell their clients what happens

    def announce(self, line: str) -> None:
        """Tell every push in flight (those deploying) `line`."""
        for gate in list(self.gates):
            gate.announce(line)

    async def drained(self) -> None:
        """Return once no push is in flight (new ones are kept out by closing the listener first)."""
        while self.pushes:
            await asyncio.wait(set(self.pushes))

    async def __call__(self, process: asyncssh.SSHServerProcess[bytes], actor: Actor, argv: list[str]) -> int:
        try:
            if len(argv) != 2:
                raise CommandError(f"{argv[0]} takes one repository path, like /myapp.git.")
            app = repos.app_from_git_path(argv[1])
            await self.services.db.run(lambda s: access.app_for(s, actor, app))
        except CommandError as exc:
            if isinstance(exc, PermissionDenied) and argv[0] == "git-receive-pack":  # a refused push is recorded
                await audit.record(self.services.db, audit.Entry(actor.who, "push", app=app, outcome=audit.DENIED,
                                                                 reason="not a member of the app's team"))
            process.stderr.write(f"error: {exc}\n".encode())
            return 1
        repo, _manifest = await asyncio.to_thread(repos.sync, self.services.storage, self.services.settings.data_dir,
                                                  app)
        if argv[0] == "git-upload-pack":
            return await self._serve(process, repo, lambda backend, proto: UploadPackHandler(backend, ["/"], proto))
        gate = PushGate(asyncio.get_running_loop(), self.controller, app, actor, repo, self.services.settings,
                        self.services)
        this = asyncio.current_task()
        assert this is not None
        self.pushes.add(this)
        self.gates.add(gate)
        try:
            return await self._serve(
                process, repo, lambda backend, proto: TeresaReceivePack(backend, ["/"], proto, gate))
        finally:  # on every way out, the client's disconnect (cancellation) included
            try:
                await asyncio.shield(gate.close())
            finally:
                self.pushes.discard(this)
                self.gates.discard(gate)

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes], repo: Path,
                     make_handler: Callable[[DictBackend, Protocol], ReceivePackHandler | UploadPackHandler]) -> int:
        streams = ThreadStreams(asyncio.get_running_loop(), process.stdin, process.stdout)

        def run() -> None:
            with Repo(str(repo)) as opened:
                served: dict[str, BackendRepo] = {"/": opened}
                backend = DictBackend(served)
                proto = Protocol(streams.read, streams.write)
                proto.recv = streams.recv  # type: ignore[attr-defined]  # lets dulwich read the pack in chunks
                make_handler(backend, proto).handle()

        try:
            await asyncio.get_running_loop().run_in_executor(SESSION_THREADS, contextvars.copy_context().run, run)
            return 0
        except (ConnectionError, EOFError, OSError, GitProtocolError) as exc:  # the client went away mid-way
            log.info("git_session_ended", error=type(exc).__name__)
            return 1


def _temporary_packs(repo: Path) -> set[Path]:
    """The packs dulwich is receiving (objects/tmp_pack_*): a failed receive leaves its own behind."""
    return set((repo / "objects").glob("tmp_pack_*"))
