#!/usr/bin/env python3
"""Replicas benchmark: 20 clients pushing at once, spread over two `teresa serve` replicas.

Both replicas share one PostgreSQL database (127.0.0.1:5432, user postgres, trust;
a fresh database is made and dropped) and one storage root, and each keeps its own
repository cache. Every client owns an app and pushes three commits, each round
with all clients at once:

1. first push, clients spread over A and B (the whole history is sent);
2. next commit through the *other* replica (incremental: that replica's cache is
   brought up to date from storage first);
3. next commit, every client through A alone: the baseline of the same work on one replica.

Every push must succeed; the script prints wall time and per-push median/p95 per round,
and round 2 against round 3. See bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.databases import postgresql_database  # noqa: E402
from tests.fixtures.replicas import Replica  # noqa: E402

PROCFILE = 'web: python3 -m http.server --bind 127.0.0.1 "$PORT"\n'
EMAIL = "bench@example.com"


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


class Client:
    def __init__(self, index: int, root: Path, key: Path, known_hosts: Path):
        self.app = f"bench-{index:02d}"
        self.work = root / self.app
        self.work.mkdir(parents=True)
        self.key = key
        self.known_hosts = known_hosts
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "config", "user.email", EMAIL)
        git(self.work, "config", "user.name", "Bench")
        self.version = 0

    def commit(self) -> None:
        self.version += 1
        (self.work / "Procfile").write_text(PROCFILE)
        (self.work / "index.html").write_text(f"{self.app} version {self.version}\n")
        for n in range(20):
            (self.work / f"page{n}.html").write_text(f"{self.app} page {n} v{self.version if n < 2 else 0}\n" * 50)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", f"v{self.version}")

    def push(self, replica: Replica) -> float:
        ssh = (f"ssh -F /dev/null -p {replica.ssh_port} -i {self.key} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={self.known_hosts} -o LogLevel=ERROR")
        env = {k: v for k, v in replica.env.items() if not k.startswith("TERESA")} | {"GIT_SSH_COMMAND": ssh}
        started = time.monotonic()
        done = git(self.work, "push", f"ssh://git@127.0.0.1:{replica.ssh_port}/{self.app}.git", "main", env=env)
        took = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"push of {self.app} through {replica.name} failed:\n{done.stderr}")
        return took


def round_of(name: str, clients: list[Client], pick: Callable[[int], Replica]) -> tuple[float, list[float]]:
    for client in clients:
        client.commit()
    started = time.monotonic()
    with ThreadPoolExecutor(len(clients)) as pool:
        times = list(pool.map(lambda pair: pair[1].push(pick(pair[0])), enumerate(clients)))
    wall = time.monotonic() - started
    ordered = sorted(times)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(f"{name:<44} wall {wall:6.1f} s   per push median {statistics.median(times):5.1f} s   "
          f"p95 {p95:5.1f} s   ({len(times)} pushes, none failed)", flush=True)
    return wall, times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="4 clients")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (replica logs)")
    options = parser.parse_args()
    if options.quick:
        options.clients = 4
    root = Path(tempfile.mkdtemp(prefix="teresa-bench-replicas-"))
    key = root / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with postgresql_database() as url:
        shared = {"TERESADB_URL": url, "TERESAFILESTORAGE_TYPE": "local",
                  "TERESAFILESTORAGE_LOCAL_ROOT": str(root / "storage"), "TERESA_BACKUP_INTERVAL": "0"}
        a, b = Replica("replica-a", root / "a", shared), Replica("replica-b", root / "b", shared)
        try:
            a.start()
            b.start()
            setup = [(["users:create", EMAIL, "--no-password", "--admin"], b""),
                     (["keys:add", "--user", EMAIL, "bench"], key.with_suffix(".pub").read_bytes()),
                     (["teams:create", "bench"], b""), (["teams:add-user", "bench", EMAIL], b"")]
            clients = [Client(i, root / "clients", key, root / "known_hosts") for i in range(options.clients)]
            setup += [(["apps:create", c.app, "--team", "bench"], b"") for c in clients]
            for argv, stdin in setup:
                done = a.cli(*argv, stdin=stdin)
                if done.returncode != 0:
                    raise SystemExit(f"teresa {' '.join(argv)} failed: {done.stderr.decode()}")
            replicas = [a, b]
            print(f"{options.clients} clients, two replicas (PostgreSQL, shared storage), each push built and released")
            round_of("1. first push, spread over A and B", clients, lambda i: replicas[i % 2])
            spread, _ = round_of("2. next commit through the other replica", clients, lambda i: replicas[(i + 1) % 2])
            single, _ = round_of("3. next commit, all through A (baseline)", clients, lambda i: a)
            print(f"two replicas / one replica, wall time of the same round: {spread / single:.2f}")
        finally:
            a.stop()
            b.stop()
    if options.keep:
        print(f"kept {root}")
    else:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
