"""Two `teresa serve` replicas sharing PostgreSQL and a SeaweedFS bucket, reached with the real git and ssh."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from core.config import StorageSettings
from tests.fixtures.databases import postgresql_database
from tests.fixtures.replicas import Replica
from tests.fixtures.teresa import GitClient, SSHClient, read_until, wait_for
from tests.gitreceiver.conftest import BUILDPACKS, WEB_APP

LEASE_SECONDS = 3
pytestmark = pytest.mark.timeout(600)  # several pushes, each built and released, on a shared machine


@dataclass
class Pair:
    a: Replica
    b: Replica
    git: GitClient  # pushes through A unless told otherwise
    key: Path
    tmp: Path

    def remote(self, replica: Replica, app: str = "shop") -> str:
        return f"ssh://git@127.0.0.1:{replica.ssh_port}/{app}.git"

    def env(self, replica: Replica) -> dict[str, str]:
        """git's environment for reaching `replica` (ssh's -p wins over the URL's port, so one per replica)."""
        ssh = SSHClient(replica, self.tmp)  # type: ignore[arg-type]
        return {**ssh.env(None), "GIT_SSH_COMMAND": " ".join(["ssh", *ssh.options(self.key)])}

    def run_git(self, replica: Replica, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=cwd or self.git.workdir, env=self.env(replica),
                              capture_output=True, text=True, timeout=180)

    def push(self, replica: Replica, *args: str, ref: str = "main") -> subprocess.CompletedProcess[str]:
        return self.run_git(replica, "push", "--progress", *args, self.remote(replica), ref)

    def popen_push(self, replica: Replica) -> subprocess.Popen[str]:
        return subprocess.Popen(["git", "push", "--progress", self.remote(replica), "main"], cwd=self.git.workdir,
                                env=self.env(replica), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                bufsize=1)

    def command(self, replica: Replica, line: str) -> tuple[int, str, str]:
        result = SSHClient(replica, self.tmp).run(line, key=self.key)  # type: ignore[arg-type]
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def clone(self, replica: Replica, name: str) -> Path:
        target = self.tmp / name
        subprocess.run(["git", "clone", "-q", "--mirror", self.remote(replica), str(target)],
                       env=self.env(replica), check=True, capture_output=True, timeout=120)
        return target

    def gate(self) -> Path:
        """Builds now wait for the returned file to exist."""
        go_ahead = self.tmp / "go-ahead"
        status, _, err = self.command(self.a, f"config:set shop BUILDPACK_URL={BUILDPACKS / 'wait_for_file'} "
                                              f"GO_AHEAD_FILE={go_ahead}")
        assert status == 0, err
        return go_ahead


def make_pair(tmp_path: Path, storage: StorageSettings, ssh_keys: dict[str, Path], **extra: str) -> Iterator[Pair]:
    with postgresql_database() as url:
        shared = {"TERESADB_URL": url, "TERESA_DEPLOY_LEASE_SECONDS": str(LEASE_SECONDS),
                  "TERESA_BACKUP_INTERVAL": "0", **storage.to_env(), **extra}
        a = Replica("replica-a", tmp_path / "a", shared)
        b = Replica("replica-b", tmp_path / "b", shared)
        try:
            a.start()
            b.start()
            for argv, stdin in [(("users:create", "dev@example.com", "--no-password"), b""),
                                (("keys:add", "--user", "dev@example.com", "laptop"),
                                 ssh_keys["alice"].with_suffix(".pub").read_bytes()),
                                (("teams:create", "web"), b""), (("teams:add-user", "web", "dev@example.com"), b""),
                                (("apps:create", "shop", "--team", "web"), b"")]:
                done = a.cli(*argv, stdin=stdin)
                assert done.returncode == 0, done.stderr
            client = tmp_path / "client"
            client.mkdir()
            git = GitClient(SSHClient(a, client), ssh_keys["alice"], tmp_path / "work")  # type: ignore[arg-type]
            yield Pair(a, b, git, ssh_keys["alice"], client)
        finally:
            a.stop()
            b.stop()


@pytest.fixture
def pair(tmp_path: Path, s3_storage: StorageSettings, ssh_keys: dict[str, Path]) -> Iterator[Pair]:
    yield from make_pair(tmp_path, s3_storage, ssh_keys)


def builds(pair: Pair, replica: Replica) -> list[dict[str, str]]:
    status, out, err = pair.command(replica, "builds shop --json")
    assert status == 0, err
    return list(json.loads(out))


def fsck_and_objects(clone: Path) -> tuple[str, str]:
    fsck = subprocess.run(["git", "fsck", "--full", "--strict"], cwd=clone, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    refs = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)"], cwd=clone,
                          capture_output=True, text=True, check=True).stdout
    objects = subprocess.run(["git", "rev-list", "--all", "--objects"], cwd=clone, capture_output=True, text=True,
                             check=True).stdout
    return refs, "\n".join(sorted(objects.splitlines()))


def test_a_push_through_b_after_one_through_a_sends_only_new_objects(pair: Pair) -> None:
    first = pair.git.commit(WEB_APP)
    pushed = pair.push(pair.a)
    assert pushed.returncode == 0, pushed.stderr
    pair.git.git("branch", "feature")
    assert pair.push(pair.a).returncode == 0
    assert pair.push(pair.a, ref="feature").returncode == 0

    second = pair.git.commit({"index.html": "version two\n"})  # one blob, one tree, one commit
    through_b = pair.push(pair.b)
    assert through_b.returncode == 0, through_b.stderr
    assert "Released v2" in through_b.stderr
    total = re.search(r"Total (\d+)", through_b.stderr)
    assert total and int(total.group(1)) == 3, through_b.stderr  # B knew `first`: only the new objects came
    assert [b["commit"] for b in builds(pair, pair.b)] == [second, first]

    from_a, from_b = pair.clone(pair.a, "from-a.git"), pair.clone(pair.b, "from-b.git")
    assert fsck_and_objects(from_a) == fsck_and_objects(from_b)
    refs = fsck_and_objects(from_b)[0]
    assert f"{second} refs/heads/main" in refs and f"{first} refs/heads/feature" in refs


def test_a_stale_push_through_the_other_replica_is_not_a_fast_forward(pair: Pair, tmp_path: Path) -> None:
    pair.git.commit(WEB_APP)
    assert pair.push(pair.a).returncode == 0
    other = GitClient(pair.git.ssh, pair.key, tmp_path / "other")
    other.commit({**WEB_APP, "index.html": "someone else's\n"})
    refused = pair.run_git(pair.b, "push", pair.remote(pair.b), "main", cwd=other.workdir)
    assert refused.returncode != 0 and "rejected" in refused.stderr  # git itself: fetch first
    assert "non-fast-forward" in refused.stderr or "fetch first" in refused.stderr


def test_concurrent_pushes_through_a_and_b_one_deploys_the_other_names_the_holder(pair: Pair) -> None:
    go_ahead = pair.gate()
    pair.git.commit(WEB_APP)
    first = pair.popen_push(pair.a)
    read_until(first, "waiting for the go-ahead")
    second = pair.push(pair.b)
    assert second.returncode != 0
    assert "dev@example.com started a deploy of shop at" in second.stderr
    assert "(deploy in progress)" in second.stderr
    go_ahead.touch()
    assert first.wait(180) == 0, first.stderr.read()
    assert [b["status"] for b in builds(pair, pair.b)] == ["succeeded"]


def test_after_a_replica_dies_mid_build_the_other_deploys_once_the_lease_expires(pair: Pair) -> None:
    go_ahead = pair.gate()
    commit = pair.git.commit(WEB_APP)
    doomed = pair.popen_push(pair.a)
    read_until(doomed, "waiting for the go-ahead")
    pair.a.kill()
    doomed.wait(60)
    go_ahead.touch()  # the orphaned builder of A may finish: nothing waits for it any more

    def pushed_through_b() -> subprocess.CompletedProcess[str] | None:
        push = pair.push(pair.b)
        if push.returncode == 0:
            return push
        assert "started a deploy of shop" in push.stderr, push.stderr  # refused only while A's lease lasts
        return None

    push = wait_for(pushed_through_b, timeout=LEASE_SECONDS * 20, interval=0.5)
    assert "Released v1" in push.stderr
    found = builds(pair, pair.b)
    assert [(b["status"], b["commit"]) for b in found] == [("succeeded", commit), ("abandoned", commit)]


def test_restarting_a_replica_mid_build_finishes_the_push_while_the_other_serves(pair: Pair) -> None:
    go_ahead = pair.gate()
    commit = pair.git.commit(WEB_APP)
    push = pair.popen_push(pair.a)
    read_until(push, "waiting for the go-ahead")
    pair.a.terminate()
    wait_for(lambda: pair.a.readyz()[0] == 503)
    assert "draining" in pair.a.readyz()[1]
    wait_for(lambda: not pair.a.accepts_ssh())
    assert pair.b.readyz()[0] == 200
    status, out, err = pair.command(pair.b, "apps:list")  # new sessions go to B meanwhile
    assert status == 0 and "shop" in out, err
    assert pair.a.process is not None and pair.a.process.poll() is None  # A still finishes its push

    go_ahead.touch()
    rest = push.stderr.read()
    assert push.wait(180) == 0, rest
    assert "remote: -----> This Teresa server is shutting down: your push finishes here first" in rest, rest
    assert pair.a.process.wait(120) == 0
    refs = pair.run_git(pair.b, "ls-remote", pair.remote(pair.b)).stdout
    assert f"{commit}\trefs/heads/main" in refs
    pair.a.start()  # the restarted replica serves what was pushed through its predecessor
    assert fsck_and_objects(pair.clone(pair.a, "after-a.git")) == fsck_and_objects(pair.clone(pair.b, "after-b.git"))


def test_the_periodic_backup_runs_on_one_replica_per_interval(tmp_path: Path, s3_storage: StorageSettings,
                                                              ssh_keys: dict[str, Path]) -> None:
    interval = 3
    for pair in make_pair(tmp_path, s3_storage, ssh_keys, TERESA_BACKUP_INTERVAL=str(interval)):
        def taken() -> list[str]:
            return [line for replica in (pair.a, pair.b) for line in replica.log().splitlines()
                    if "backup taken" in line]

        wait_for(lambda: len(taken()) >= 4, timeout=60, interval=0.5)
        pair.a.stop()
        pair.b.stop()
        by = [("replica-a" if line in pair.a.log() else "replica-b") for line in taken()]
        names = [re.search(r"teresa-(\d{8}T\d{6}Z)", line) for line in taken()]
        stamps = sorted(match.group(1) for match in names if match)
        assert len(stamps) == len(set(stamps)), stamps  # never two backups for one moment
        import datetime as dt

        times = [dt.datetime.strptime(s, "%Y%m%dT%H%M%SZ") for s in stamps]
        gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]
        assert all(gap >= interval - 1 for gap in gaps), gaps  # once per interval across both replicas
        assert by  # (which replica took each one does not matter)
