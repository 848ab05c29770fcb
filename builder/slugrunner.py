"""teresa-slugrunner: run a process of a slug.

    teresa-slugrunner start TYPE       unpack the slug (if TERESA_SLUG_URL is set), then exec TYPE's Procfile command
    teresa-slugrunner fetch            only download and unpack the slug into TERESA_APP_DIR

TERESA_SLUG_URL is a read grant for the slug alone (a presigned URL, a file: URL or fd:N; see
builder/transfer.py): the runner holds no storage credential. TERESA_SLUG_SHA256, when set, is the
slug's digest recorded when its build ended: a slug that no longer matches it is not unpacked.
    teresa-slugrunner exec -- CMD ...  run a command in the slug's environment
    teresa-slugrunner init -- CMD ...  a container's first process: CMD's group gets its signals (slug_init.py)

The slug is unpacked into TERESA_APP_DIR (default /app), which becomes HOME and the working
directory. `.profile` and `.profile.d/*.sh` are sourced by bash, which then execs the command, so
the app keeps the process id that was started and receives signals directly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Mapping, NoReturn, Sequence

from builder import archive, procfile, slug_init, transfer

# $1 is the command line; bash -c of a simple command execs it in place.
PROFILE_THEN_EXEC = (
    'for f in "$HOME"/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done; '
    '[ -r "$HOME/.profile" ] && . "$HOME/.profile"; '
)


class RunnerError(Exception):
    """One sentence for the user."""


class SlugChanged(RunnerError):
    """The slug is not the one its build left: it was written again (a stale upload grant) or altered in storage."""

    def __init__(self) -> None:
        super().__init__("The slug was changed in storage since its build (its SHA-256 digest is not the one "
                         "recorded then), so it is not run; push again to rebuild it.")


SLUG_URL = "TERESA_SLUG_URL"
SLUG_SHA256 = "TERESA_SLUG_SHA256"


def job_env(slug_url: str, app_dir: str | None = None, digest: str = "") -> dict[str, str]:
    """What a runtime adds to a process's environment so `teresa-slugrunner` finds its slug (and checks it)."""
    env = {SLUG_URL: slug_url}
    if app_dir:
        env["TERESA_APP_DIR"] = app_dir
    if digest:
        env[SLUG_SHA256] = digest
    return env


def app_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("TERESA_APP_DIR") or "/app").absolute()


def fetch(env: Mapping[str, str]) -> Path:
    """Download TERESA_SLUG_URL, check it against TERESA_SLUG_SHA256 (when set) and unpack it into the app directory."""
    url = env.get(SLUG_URL, "")
    if not url:
        raise RunnerError(f"{SLUG_URL} is not set; set it to a URL of the slug.")
    target = app_dir(env)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="teresa-slug-") as tmp:
            slug = Path(tmp) / "slug.tgz"
            transfer.download(url, slug)
            check_digest(slug, env.get(SLUG_SHA256, ""))
            archive.extract(slug, target, what="slug", any_link_target=True)
    except (transfer.TransferError, archive.ArchiveError) as exc:
        raise RunnerError(str(exc)) from None
    return target


def check_digest(slug: Path, expected: str) -> None:
    """Raise SlugChanged unless the downloaded slug's SHA-256 is `expected` ("": none was recorded, as for
    releases made before digests were)."""
    if not expected:
        return
    with slug.open("rb") as stream:
        if transfer.sha256_of(stream) != expected.strip().lower():
            raise SlugChanged()


def command_for(directory: Path, process_type: str) -> str:
    path = directory / "Procfile"
    if not path.is_file():
        raise RunnerError(f"The slug in {directory} has no Procfile; rebuild the app.")
    try:
        processes = procfile.parse(path.read_text())
    except procfile.ProcfileError as exc:
        raise RunnerError(str(exc)) from None
    if process_type not in processes:
        known = ", ".join(processes) or "none"
        raise RunnerError(f"Process type {process_type!r} is not in the Procfile; the types are: {known}.")
    return processes[process_type]


def app_environment(env: Mapping[str, str], directory: Path) -> dict[str, str]:
    """The app's environment: the slug's grant removed, HOME the app dir."""
    clean = {k: v for k, v in env.items() if k != SLUG_URL}
    clean["HOME"] = str(directory)
    return clean


def exec_in_slug(env: Mapping[str, str], directory: Path, script: str, args: Sequence[str]) -> NoReturn:
    os.chdir(directory)
    sys.stdout.flush()
    os.execvpe("bash", ["bash", "-c", PROFILE_THEN_EXEC + script, "teresa-slugrunner", *args],
               app_environment(env, directory))  # fmt: skip


def _prepare(env: Mapping[str, str]) -> Path:
    if env.get(SLUG_URL):
        return fetch(env)
    directory = app_dir(env)
    if not directory.is_dir():
        raise RunnerError(f"{directory} does not exist; set {SLUG_URL} or TERESA_APP_DIR to an unpacked slug.")
    return directory


def start(env: Mapping[str, str], process_type: str) -> NoReturn:
    directory = _prepare(env)
    command = command_for(directory, process_type)
    exec_in_slug(env, directory, 'exec bash -c "$1"', [command])


def run_command(env: Mapping[str, str], argv: Sequence[str]) -> NoReturn:
    if not argv:
        raise RunnerError("exec needs a command; use teresa-slugrunner exec -- CMD ARGS...")
    directory = _prepare(env)
    if len(argv) == 1 and any(ch.isspace() for ch in argv[0]):
        exec_in_slug(env, directory, 'exec bash -c "$1"', argv)  # one string: a shell command line
    exec_in_slug(env, directory, 'exec "$@"', argv)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="teresa-slugrunner", description="Run a process of a Teresa slug.")
    commands = parse.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="run a Procfile process type").add_argument("type")
    commands.add_parser("fetch", help="only download and unpack the slug")
    commands.add_parser("exec", help="run a command in the slug's environment").add_argument("argv", nargs=argparse.REMAINDER)
    commands.add_parser("init", help="run a command as a container's first process").add_argument(
        "argv", nargs=argparse.REMAINDER)
    return parse


def _command(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    env = dict(os.environ)
    try:
        if args.command == "fetch":
            print(f"Unpacked the slug into {fetch(env)}", flush=True)
        elif args.command == "start":
            start(env, args.type)
        elif args.command == "init":
            slug_init.main(_command(args.argv))
        else:
            run_command(env, _command(args.argv))
    except RunnerError as exc:
        print(f"teresa-slugrunner: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as exc:  # never a traceback: one line naming what broke
        print(f"teresa-slugrunner: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
