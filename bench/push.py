#!/usr/bin/env python3
"""Push benchmark: `git push` of a generated repository to Teresa and to OpenSSH's sshd.

Both servers run on 127.0.0.1 under this script's own temporary directory and
are stopped when it exits (Ctrl-C included). Teresa's time includes its build
and release; OpenSSH's is `git-receive-pack` alone. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")
PROCFILE = 'web: python3 -m http.server --bind 127.0.0.1 "$PORT"\n'
FIXED_DATE = "2024-01-01T00:00:00Z"
EMAIL = "bench@example.com"
TEAM = "web"
START_TIMEOUT = 60.0
PUSH_TIMEOUT = 1800.0
NO_DEPLOY_GOAL = 1.1  # a push to a branch that does not deploy, against OpenSSH + git-receive-pack


# ---------------------------------------------------------------- processes


class Processes:
    """Every long-running process this script starts, stopped on exit (each by its own process group)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(list(argv), start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            stop(process)
        self.started.clear()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc (children of children included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL the process group; also kill what it started and left behind."""
    if process.poll() is not None:
        return
    below = descendants(process.pid)
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid in below:  # e.g. app processes Teresa put in their own sessions
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with status {process.returncode}; its log:\n{log.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.05)
    sys.exit(f"{what} did not become ready in {START_TIMEOUT:.0f}s; its log:\n{log.read_text()[-3000:]}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(list(argv), capture_output=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(f"`{' '.join(map(str, argv))}` failed: {result.stderr.decode(errors='replace').strip()}")
    return result


# ---------------------------------------------------------------- the repository


def make_repository(path: Path, files: int, size_mb: float, seed: int) -> int:
    """A committed, fully packed repository of incompressible files plus a Procfile; returns the pack size."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    (path / "Procfile").write_text(PROCFILE)
    per_file = max(1, int(size_mb * 1024 * 1024 / files))
    for index in range(files):
        target = path / "data" / f"{index // 100:03d}" / f"{index:05d}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rng.randbytes(per_file))
    env = {**git_env(), "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE}
    for argv in (["init", "-q", "-b", "main"], ["config", "core.compression", "1"], ["add", "-A"],
                 ["-c", "user.name=Bench", "-c", f"user.email={EMAIL}", "commit", "-q", "-m", "bench"],
                 ["repack", "-a", "-d", "-q"], ["prune"]):
        run(["git", *argv], cwd=path, env=env)
    return sum(pack.stat().st_size for pack in (path / ".git" / "objects" / "pack").glob("*.pack"))


def git_env(ssh_command: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_AUTH_SOCK", "TERESA"))}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    if ssh_command:
        env["GIT_SSH_COMMAND"] = ssh_command
    return env


def ssh_command(key: Path, known_hosts: Path) -> str:
    return (f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new "
            f"-o UserKnownHostsFile={known_hosts} -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=30")


# ---------------------------------------------------------------- pushing


@dataclass
class Push:
    ok: bool
    seconds: float
    accepted: float | None  # Teresa: when the build started, i.e. the pack was stored
    output: str


def push(repo: Path, url: str, env: dict[str, str], processes: Processes, branch: str = "main") -> Push:
    """`git push URL main:BRANCH`, timing the whole push and the moment Teresa stored the pack."""
    started = time.monotonic()
    process = processes.start(["git", "push", "--progress", url, f"main:refs/heads/{branch}"], cwd=repo, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    accepted, chunks = None, []
    assert process.stderr is not None
    while chunk := process.stderr.read1(65536):
        chunks.append(chunk)
        if accepted is None and re.search(rb"-----> (Building|Stored)", b"".join(chunks[-2:])):
            accepted = time.monotonic() - started
    status = process.wait(PUSH_TIMEOUT)
    seconds = time.monotonic() - started
    processes.started.remove(process)
    return Push(status == 0, seconds, accepted, b"".join(chunks).decode(errors="replace"))


def push_all(repo: Path, urls: list[str], env: dict[str, str], processes: Processes,
             repos: list[Path] | None = None) -> list[Push]:
    """Every push at once, one thread each; `repos` gives each its own repository (else all push `repo`)."""
    results: list[Push | None] = [None] * len(urls)

    def one(index: int) -> None:
        results[index] = push(repos[index] if repos else repo, urls[index], env, processes)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r if r is not None else Push(False, 0.0, None, "the push thread failed") for r in results]


# ---------------------------------------------------------------- memory


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


@dataclass
class Peak:
    server_hwm_kb: int = 0  # VmHWM of `teresa serve` itself, reset before the push
    tree_kb: int = 0  # sampled: server VmRSS + every process it started during the push
    anon_kb: int = 0  # sampled: the server's RssAnon, i.e. without mapped files (dulwich mmaps packs)


@contextlib.contextmanager
def memory_peak(server_pid: int, interval: float = 0.02) -> Iterator[Peak]:
    """Peak memory of the server during the block.

    The server's own high-water mark comes from the kernel (VmHWM, reset through
    /proc/PID/clear_refs), so it misses nothing. The tree figure is sampled every
    `interval` seconds and leaves out processes that were already running before
    the block (the apps of earlier pushes).
    """
    peak = Peak()
    reset = True
    try:
        Path(f"/proc/{server_pid}/clear_refs").write_text("5")
    except OSError:
        reset = False
    before = set(descendants(server_pid))
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tree = rss_kb(server_pid) + sum(rss_kb(p) for p in descendants(server_pid) if p not in before)
            peak.tree_kb = max(peak.tree_kb, tree)
            peak.anon_kb = max(peak.anon_kb, rss_kb(server_pid, "RssAnon"))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.server_hwm_kb = rss_kb(server_pid, "VmHWM") if reset else 0


# ---------------------------------------------------------------- the servers


class Teresa:
    """`teresa serve` on free loopback ports, with a team, an admin and its key."""

    def __init__(self, root: Path, teresa_bin: Path, public_key: Path, processes: Processes):
        self.root = root
        self.bin = teresa_bin
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TERESA", "SSH_AUTH_SOCK"))}
        self.env.update(TERESA_DATA_DIR=str(root / "data"), TERESA_SSH_ADDR=f"127.0.0.1:{self.port}",
                        TERESA_ROUTER_ADDR=f"127.0.0.1:{free_port()}", TERESA_HTTP_ADDR=f"127.0.0.1:{free_port()}",
                        TERESA_LOG_FORMAT="console", TERESA_RUNTIME="local",
                        TERESA_APP_ISOLATION="off")  # one user's benchmark: apps run as this user
        root.mkdir()
        self.log = root / "teresa.log"
        with self.log.open("wb") as log:
            self.process = processes.start([str(teresa_bin), "serve"], env=self.env, cwd=root,
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        control = root / "data" / "control.sock"
        wait_until("teresa serve", lambda: control.exists() and port_open(self.port), self.process, self.log)
        self.cli("users:create", EMAIL, "--no-password", "--admin")
        self.cli("keys:add", "--user", EMAIL, "bench", stdin=public_key.read_bytes())
        self.cli("teams:create", TEAM)
        self.cli("teams:add-user", TEAM, EMAIL)

    def cli(self, *argv: str, stdin: bytes = b"") -> None:
        run([str(self.bin), *argv], input=stdin, env=self.env, cwd=self.root, timeout=120)

    def create_app(self, name: str) -> str:
        self.cli("apps:create", name, "--team", TEAM)
        return f"ssh://git@127.0.0.1:{self.port}/{name}.git"


class OpenSSH:
    """An unprivileged sshd of our own: config, host key and authorized_keys in `root`."""

    def __init__(self, root: Path, public_key: Path, processes: Processes):
        self.root = root
        self.port = free_port()
        self.user = os_user()
        root.mkdir()
        host_key = root / "host_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        authorized = root / "authorized_keys"
        authorized.write_bytes(public_key.read_bytes())
        authorized.chmod(0o600)
        config = root / "sshd_config"
        config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {authorized}
AllowUsers {self.user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
LogLevel ERROR
""")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.log = root / "sshd.log"
        with self.log.open("wb") as log:
            self.process = processes.start([str(SSHD), "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT)
        wait_until("sshd", lambda: port_open(self.port), self.process, self.log)

    def create_repo(self, name: str) -> str:
        path = self.root / f"{name}.git"
        run(["git", "init", "-q", "--bare", str(path)], env=git_env())
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def os_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def ensure_sshd() -> None:
    if SSHD.exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"{SSHD} is missing; install Debian's openssh-server (apt-get install openssh-server) and rerun.")
    print("installing openssh-server with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"], env=env)


def find_teresa(given: str | None) -> Path:
    candidates = [given] if given else [str(Path(sys.executable).parent / "teresa"),
                                        str(REPO_ROOT / ".venv" / "bin" / "teresa"), shutil.which("teresa")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    sys.exit("cannot find the `teresa` command; create the venv (make test) or pass --teresa PATH.")


# ---------------------------------------------------------------- the benchmark


@dataclass
class Figures:
    teresa: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)
    openssh: list[float] = field(default_factory=list)
    peaks: list[Peak] = field(default_factory=list)


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def highest(peaks: list[Peak]) -> Peak:
    return Peak(max(p.server_hwm_kb for p in peaks), max(p.tree_kb for p in peaks), max(p.anon_kb for p in peaks))


def describe(peak: Peak) -> str:
    return (f"server {mb(peak.server_hwm_kb)} (VmHWM), of it anonymous {mb(peak.anon_kb)} (RssAnon), "
            f"with children {mb(peak.tree_kb)}")


def fail(what: str, result: Push) -> None:
    sys.exit(f"{what} failed after {result.seconds:.1f}s; the last of its output:\n{result.output[-3000:]}")


def compare(label: str, repo: Path, runs: int, teresa: Teresa, openssh: OpenSSH, env: dict[str, str],
            processes: Processes, branch: str = "main") -> Figures:
    figures = Figures()
    for index in range(1, runs + 1):
        url = openssh.create_repo(f"{label}-{index}")
        result = push(repo, url, env, processes, branch)
        if not result.ok:
            fail(f"push {index} of {label} to OpenSSH", result)
        figures.openssh.append(result.seconds)

        url = teresa.create_app(f"{label}-{index}")
        with memory_peak(teresa.process.pid) as peak:
            result = push(repo, url, env, processes, branch)
        if not result.ok:
            fail(f"push {index} of {label} to Teresa", result)
        figures.teresa.append(result.seconds)
        if result.accepted is not None:
            figures.accepted.append(result.accepted)
        figures.peaks.append(peak)
        accepted = f", pack stored at {result.accepted:.2f}s" if result.accepted is not None else ""
        print(f"  {label} run {index}: OpenSSH {figures.openssh[-1]:.2f}s, Teresa {result.seconds:.2f}s"
              f"{accepted}; Teresa peak: {describe(peak)}", flush=True)
    return figures


def report(label: str, packed: int, figures: Figures, goal: float | None = None) -> None:
    teresa, openssh = statistics.median(figures.teresa), statistics.median(figures.openssh)
    print(f"{label} ({packed / 1e6:.1f} MB packed), median of {len(figures.teresa)}:")
    print(f"  OpenSSH sshd + git-receive-pack  {openssh:8.2f} s")
    what = "(push, stored only)  " if goal else "(push, build, release)"
    print(f"  Teresa {what}    {teresa:8.2f} s")
    if figures.accepted:
        print(f"  Teresa, until the pack is stored {statistics.median(figures.accepted):8.2f} s")
    ratio = teresa / openssh
    verdict = f"   goal <= {goal}x  {'ok' if ratio <= goal else 'MISSED'}" if goal else ""
    print(f"  ratio Teresa / OpenSSH           {ratio:8.2f}{verdict}")
    if figures.accepted:
        print(f"  ratio (pack stored) / OpenSSH    {statistics.median(figures.accepted) / openssh:8.2f}")
    peak = highest(figures.peaks)
    print(f"  Teresa peak RSS, server process  {mb(peak.server_hwm_kb):>8}  (VmHWM, mapped pack files included)")
    print(f"  Teresa peak RSS, anonymous       {mb(peak.anon_kb):>8}  (RssAnon, sampled)")
    print(f"  Teresa peak RSS, with children   {mb(peak.tree_kb):>8}  (VmRSS sum, sampled)")


def concurrent(count: int, repo: Path, teresa: Teresa, env: dict[str, str], processes: Processes) -> None:
    urls = [teresa.create_app(f"many-{index}") for index in range(1, count + 1)]
    started = time.monotonic()
    with memory_peak(teresa.process.pid) as peak:
        results = push_all(repo, urls, env, processes)
    wall = time.monotonic() - started
    succeeded = sum(r.ok for r in results)
    print(f"{count} concurrent pushes to {count} apps: {succeeded}/{count} succeeded, wall time {wall:.2f} s "
          f"(slowest push {max(r.seconds for r in results):.2f} s); Teresa peak RSS: {describe(peak)}")
    for index, result in enumerate(results, 1):
        if not result.ok:
            print(f"  many-{index} failed after {result.seconds:.1f}s:\n    "
                  + "\n    ".join(result.output.strip().splitlines()[-8:]))


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="pushes to each server; the median is reported (3)")
    parser.add_argument("--files", type=int, default=4000, help="files in the generated repository (4000)")
    parser.add_argument("--size-mb", type=float, default=40, help="their total size, incompressible (40)")
    parser.add_argument("--big-size-mb", type=float, default=200, help="size of the big push (200)")
    parser.add_argument("--concurrent", type=int, default=20, help="concurrent pushes to as many apps (20)")
    parser.add_argument("--skip-big", action="store_true", help="skip the big push")
    parser.add_argument("--skip-concurrent", action="store_true", help="skip the concurrent pushes")
    parser.add_argument("--branch", default="main",
                        help="the branch pushed (main: built and released; another: stored only, the 1.1x goal)")
    parser.add_argument("--quick", action="store_true", help="one 10 MB push each, 5 concurrent, no big push")
    parser.add_argument("--seed", type=int, default=4, help="seed of the generated content (4)")
    parser.add_argument("--teresa", help="the teresa command (default: the one next to this Python, or .venv)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.files, args.size_mb, args.skip_big, args.concurrent = 1, 1000, 10, True, 5
    if args.runs < 1 or args.files < 1 or args.size_mb <= 0 or args.concurrent < 1:
        parser.error("--runs, --files, --size-mb and --concurrent must be positive.")
    return args


def benchmark(args: argparse.Namespace, work: Path, processes: Processes) -> None:
    teresa_bin = find_teresa(args.teresa)
    ensure_sshd()
    key = work / "client_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)])
    env = git_env(ssh_command(key, work / "known_hosts"))

    print(f"generating {args.files} files, {args.size_mb:g} MB (seed {args.seed}) ...", flush=True)
    repo = work / "repo"
    packed = make_repository(repo, args.files, args.size_mb, args.seed)
    openssh = OpenSSH(work / "sshd", key.with_suffix(".pub"), processes)
    teresa = Teresa(work / "teresa", teresa_bin, key.with_suffix(".pub"), processes)
    print(f"Teresa ssh on 127.0.0.1:{teresa.port} (pid {teresa.process.pid}), "
          f"OpenSSH sshd on 127.0.0.1:{openssh.port}", flush=True)

    goal = NO_DEPLOY_GOAL if args.branch not in ("main", "master") else None
    main = compare("push", repo, args.runs, teresa, openssh, env, processes, args.branch)
    big = None
    if not args.skip_big:
        big_repo = work / "big"
        print(f"generating {args.files} files, {args.big_size_mb:g} MB ...", flush=True)
        big_packed = make_repository(big_repo, args.files, args.big_size_mb, args.seed + 1)
        big = compare("big", big_repo, 1, teresa, openssh, env, processes, args.branch)
    print()
    report("push", packed, main, goal)
    if big is not None:
        print()
        report("big push", big_packed, big, goal)
        print()
        print("Teresa peak RSS by push size   server (VmHWM)   anonymous (RssAnon)   with children")
        for size, figures in ((packed, main), (big_packed, big)):
            peak = highest(figures.peaks)
            print(f"  {size / 1e6:6.1f} MB packed     {mb(peak.server_hwm_kb):>12}   {mb(peak.anon_kb):>19}"
                  f"   {mb(peak.tree_kb):>13}")
    if not args.skip_concurrent:
        print(flush=True)
        concurrent(args.concurrent, repo, teresa, env, processes)


def main(argv: Sequence[str] | None = None) -> None:
    args = options(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on kill too
    work = Path(tempfile.mkdtemp(prefix="teresa-bench-"))
    processes = Processes()
    try:
        benchmark(args, work, processes)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers.", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        processes.stop_all()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
