"""Who an app's processes run as on the local runtime, and the directories they may use.

When Teresa runs as root, every build, one-off and process of an app runs as
that app's own unprivileged uid (and gid): `TERESA_APP_UID_BASE + N`, N given
to the app on its first use and kept in its state directory. No /etc/passwd
entry is made: a uid needs none to own files and processes, and a range keeps
app names of any length (useradd stops at 32 characters). Such a uid cannot
read the data directory (root's, 0700), another app's files (each app's
directories are its own, 0700), or another uid's /proc/PID/environ, and cannot
signal or trace another uid's processes. Each of them also runs in a sandbox
of its own (sandbox.py): a mount namespace showing Teresa's programs and the
stack's runtimes read-only wherever they are installed (under /root, say), the
platform's state not at all, and of the apps directory only the app's own.

When Teresa does not run as root, everything runs as Teresa's own user: the
local runtime is then single-tenant (it declares no Capability.USER_PER_APP,
see capabilities.py), and the server says so at start.

    TERESA_APPS_DIR/            root, 0711: app users may pass, not list
      <app>/                    root, 0711
        releases/               root, 0711: only the server renames in here
          vN/                   the app's uid, 0700: an unpacked slug (HOME of its processes)
        tmp/                    the app's uid, 0700: HOME and TMPDIR of builds
        oneoffs/<dyno>.<id>/    the app's uid, 0700: the fresh copy of a release each one-off runs in
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from controller.runtime.base import RuntimeFailure
from controller.runtime.local import sandbox
from controller.runtime.local.sandbox import Mount, SandboxPlan
from core.private import private_dir

TREECOPY = Path(__file__).with_name("treecopy.py")
UID_FILE = "uid"
UID_RANGE = 1_000_000
PASSABLE = 0o711


@dataclass(frozen=True)
class AppUser:
    uid: int
    gid: int
    mounts: tuple[Mount, ...] = ()  # the app's sandbox (sandbox.py); none: the uid alone

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as this user runs it: through the sandbox's entry, which drops to the uid itself."""
        return sandbox.command(self.mounts, self.uid, self.gid, argv) if self.mounts else list(argv)

    def spawn_options(self) -> dict[str, Any]:
        """subprocess options for `command(argv)`: a private umask, and the uid when there is no sandbox."""
        if self.mounts:
            return {"umask": 0o077}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "umask": 0o077}


def multi_tenant(setting: bool | None = None) -> bool:
    """Whether apps get users of their own: as root, unless TERESA_APP_ISOLATION=off (`setting` False)."""
    return os.geteuid() == 0 and setting is not False


class Tenancy:
    def __init__(self, state_dir: Path, work_root: Path, uid_base: int, *, isolate: bool | None = None,
                 private: Sequence[Path] = (), env: Mapping[str, str] | None = None) -> None:
        self.state_dir = state_dir        # root-only: data_dir/apps
        self.work_root = work_root
        self.uid_base = uid_base
        self.isolate = multi_tenant(isolate)
        self.private = (state_dir, *private)  # absent from every sandbox
        self.env = dict(os.environ if env is None else env)
        self._plan: SandboxPlan | None = None
        self._lock = threading.Lock()

    # -- users

    def user(self, app: str) -> AppUser | None:
        """The app's user (allocated on first use), or None when processes run as Teresa's user. Blocking."""
        if not self.isolate:
            return None
        with self._lock:
            path = self.state_dir / app / UID_FILE
            if path.is_file():
                uid = int(path.read_text().strip())
            else:
                taken = {int(p.read_text().strip()) for p in self.state_dir.glob(f"*/{UID_FILE}")}
                uid = next(self.uid_base + n for n in range(1, UID_RANGE) if self.uid_base + n not in taken)
                private_dir(path.parent)
                partial = path.with_suffix(".partial")
                partial.write_text(f"{uid}\n")
                partial.replace(path)
            return AppUser(uid, uid, self.plan().for_app(app))

    def plan(self) -> SandboxPlan:
        """The sandbox's shared mounts, worked out once (it globs the stack's install directories)."""
        if self._plan is None:
            self._plan = SandboxPlan.make(self.work_root.absolute(), self.private, self.env)
        return self._plan

    # -- directories

    def check(self) -> None:
        """As root, prove an app's uid can run Teresa's programs in a sandbox; refuse to start otherwise. Blocking."""
        if not self.isolate:
            return
        self._passable(self.work_root)
        probe = sandbox.command(self.plan().shared, self.uid_base, self.uid_base,
                                [sys.executable, "-c", "import builder.slugbuilder, builder.slugrunner"])
        try:
            result = subprocess.run(probe, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            failed = result.returncode != 0
            detail = (result.stderr.decode(errors="replace").strip().splitlines() or [""])[-1][:300]
        except (OSError, subprocess.TimeoutExpired) as exc:
            failed, detail = True, str(exc)
        if failed:
            raise RuntimeFailure(f"Per-app isolation cannot work here ({detail.rstrip('.')}); run Teresa as root "
                                 "where mount namespaces are allowed, or set TERESA_APP_ISOLATION=off to run "
                                 "every app as Teresa's own user (single-tenant).")

    def _passable(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, PASSABLE if self.isolate else 0o700)
        return path

    def app_root(self, app: str) -> Path:
        return self.work_root / app

    def releases_dir(self, app: str) -> Path:
        return self.app_root(app) / "releases"

    def prepare(self, app: str) -> None:
        """The app's directories, with their owners and modes; blocking."""
        self._passable(self.work_root)
        self._passable(self.app_root(app))
        self._passable(self.releases_dir(app))
        self.owned(self.tmp_dir(app), self.user(app))

    def tmp_dir(self, app: str) -> Path:
        return self.app_root(app) / "tmp"

    def oneoffs_dir(self, app: str) -> Path:
        return self.app_root(app) / "oneoffs"

    def copy_release(self, source: Path, target: Path, user: AppUser | None) -> None:
        """Copy an unpacked release to `target` (in `oneoffs_dir`) for a one-off, without the sockets and FIFOs a
        running process keeps there (treecopy.py); blocking.

        As the app's user when there is one: the release is the app's, and a copy made as root
        would follow what the app's processes can change under it (a file swapped for a symlink)."""
        self.owned(target.parent, user)
        argv = [sys.executable, "-I", "-S", str(TREECOPY), str(source), str(target)]
        result = subprocess.run(user.command(argv) if user else argv, cwd="/", stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=600, **(user.spawn_options() if user else {}))
        if result.returncode != 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            detail = lines[-1][:200] if lines else f"exit status {result.returncode}"
            raise RuntimeFailure(f"The release could not be copied for the one-off ({detail}); try again, and if it "
                                 "fails again, ask the operator to check the server's disk.")

    @staticmethod
    def owned(path: Path, user: AppUser | None) -> Path:
        """A 0700 directory belonging to `user` (Teresa's user when None)."""
        path.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.lchown(path, user.uid, user.gid)
        os.chmod(path, 0o700)
        return path
