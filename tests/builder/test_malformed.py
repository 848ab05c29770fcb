"""Bad input fails the build cleanly: a non-zero exit, one sentence naming the problem, nothing written outside."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from builder import archive
from core.config import StorageSettings
from tests.builder.conftest import TEST_BUILDPACKS, Build, Builder, tarball


@pytest.fixture
def builder(tmp_path: Path) -> Builder:
    return Builder(StorageSettings(type="local", root=tmp_path / "storage"))


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The slugbuilder's TMPDIR: its work directory (and the build dir) live in here."""
    path = tmp_path / "scratch"
    path.mkdir()
    return path


def evil_tarball(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(_file("Procfile", b"web: sleep 1\n"), io.BytesIO(b"web: sleep 1\n"))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"pwned\n") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def assert_failed_with(build: Build, *fragments: str) -> None:
    assert build.status != 0
    assert "Traceback" not in build.output
    last = build.lines[-1]
    assert last.startswith(" !     "), build.output
    for fragment in fragments:
        assert fragment in last, build.output


def everything_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


UNSAFE = [
        pytest.param(lambda out: [(_file(str(out / "abs.txt")), b"pwned\n")], "absolute path", id="absolute-path"),
        pytest.param(lambda out: [(_file("../../escaped.txt"), b"pwned\n")], "a `..` path", id="dot-dot-path"),
        pytest.param(
            lambda out: [(_link("up", "../../.."), b""), (_file("up/escaped.txt"), b"pwned\n")],
            "symlink to '../../..' outside", id="symlink-escaping",
        ),
        pytest.param(
            lambda out: [(_link("abs", str(out)), b""), (_file("abs/escaped.txt"), b"pwned\n")],
            "outside the directory", id="absolute-symlink",
        ),
        pytest.param(  # each link looks inside on its own; together they climb out
            lambda out: [(_link("d/l", ".."), b""), (_link("d/l/m", ".."), b""), (_file("d/l/m/escaped.txt"), b"pwned\n")],
            "unsafe entry 'd/l/m'", id="symlink-chain",
        ),
        pytest.param(lambda out: [(_link("hard", "/etc/passwd", tarfile.LNKTYPE), b"")], "hard link", id="hard-link"),
        pytest.param(lambda out: [(_link("dev", "", tarfile.CHRTYPE), b"")], "device", id="device-file"),
]  # fmt: skip


@pytest.mark.parametrize(("members", "problem"), UNSAFE)
def test_unsafe_tarball_is_refused_and_nothing_escapes(builder, scratch, tmp_path, members, problem) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    before = everything_under(tmp_path)
    build = builder.build(evil_tarball(*members(outside)), TMPDIR=str(scratch))
    assert_failed_with(build, "Build failed: The source tarball has an unsafe entry", problem, "remove it and try again")
    assert everything_under(outside) == []
    assert everything_under(scratch) == []  # the work directory is gone, nothing was left beside it
    assert [p for p in everything_under(tmp_path) if p not in before and "storage" not in p.parts] == []


@pytest.mark.parametrize(
    "payload",
    [pytest.param(os.urandom(4096), id="random-bytes"), pytest.param(tarball({"a": os.urandom(5000)})[:2000], id="truncated")],
)
def test_corrupt_tarball_fails_in_one_sentence(builder: Builder, payload: bytes) -> None:
    build = builder.build(payload)
    assert_failed_with(build, "Build failed: The source tarball is corrupt or not a gzip tar archive", "upload it again.")


def test_gzip_that_is_not_a_tar_fails_in_one_sentence(builder: Builder) -> None:
    build = builder.build(gzip.compress(b"just some text, not a tar archive\n" * 100))
    assert_failed_with(build, "The source tarball is corrupt or not a gzip tar archive")


def test_bad_procfile_line_names_the_line(builder: Builder) -> None:
    build = builder.build({"Procfile": "# processes\nweb: python3 -m http.server\nworker python3 worker.py\n"})
    assert_failed_with(build, "Procfile line 3 is not `type: command`", "write it like `web: python app.py`")


def test_buildpack_without_bin_detect_is_refused(builder: Builder) -> None:
    url = str(TEST_BUILDPACKS / "no_detect")
    build = builder.build({"README": "x"}, BUILDPACK_URL=url)
    assert_failed_with(build, f"The buildpack {url} has no bin/detect", "needs bin/detect, bin/compile and bin/release")


def test_buildpack_url_that_is_no_directory(builder: Builder, tmp_path: Path) -> None:
    build = builder.build({"README": "x"}, BUILDPACK_URL=str(tmp_path / "missing"))
    assert_failed_with(build, "is not a directory")


def test_custom_buildpack_that_does_not_detect_the_app(builder: Builder) -> None:
    build = builder.build({"README": "x"}, BUILDPACK_URL=str(TEST_BUILDPACKS / "hello"))
    assert_failed_with(build, "does not support this app")


def test_unreachable_git_buildpack(builder: Builder, tmp_path: Path) -> None:
    build = builder.build({"README": "x"}, BUILDPACK_URL=f"file://{tmp_path}/nothing.git#main")
    assert_failed_with(build, "Could not fetch the buildpack", "check BUILDPACK_URL")


def test_app_no_buildpack_recognises(builder: Builder) -> None:
    build = builder.build({"README.md": "# nothing to run"})
    assert_failed_with(build, "No buildpack recognises this app", "requirements.txt", "BUILDPACK_URL")


def test_runtime_txt_naming_a_python_the_stack_lacks(builder: Builder) -> None:
    build = builder.build({"requirements.txt": "", "runtime.txt": "python-3.4.0\n"})
    assert build.status != 0
    assert "runtime.txt asks for Python 3.4.0 but this stack has Python " in build.output
    assert "change runtime.txt to one of them" in build.output


def test_invalid_build_config(builder: Builder) -> None:
    keys = builder.upload(tarball({"Procfile": "web: x\n"}))
    env = builder.env(keys, None)
    env["TERESA_BUILD_CONFIG"] = "[1, 2"
    import subprocess

    from tests.builder.conftest import script

    proc = subprocess.run(script("teresa-slugbuilder"), env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stdout.rstrip().splitlines() == [
        ' !     TERESA_BUILD_CONFIG is not a JSON object of strings; set it like {"NAME": "value"}.'
    ]


def test_missing_source_in_storage(builder: Builder) -> None:
    import subprocess

    from tests.builder.conftest import script

    env = builder.env(("apps/x/builds/1/source.tgz", "apps/x/builds/1/slug.tgz", "apps/x/cache/cache.tgz"), None)
    proc = subprocess.run(script("teresa-slugbuilder"), env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stdout.rstrip().splitlines()[-1] == (
        " !     Build failed: The pushed source is not in storage any more; push again."
    )


def test_secret_config_values_are_masked_in_output(builder: Builder) -> None:
    source = {"Procfile": "web: x\n"}
    build = builder.build(
        source, {"API_TOKEN": "s3cr3t-value", "DATABASE_URL": "postgres://u:hunter22@db/app"},
        BUILDPACK_URL=str(TEST_BUILDPACKS / "echo_env"),
    )  # fmt: skip
    assert build.status == 0, build.output
    assert "s3cr3t-value" not in build.output and "hunter22" not in build.output
    assert "API_TOKEN=****" in build.output
    assert "DATABASE_URL=postgres://u:****@db/app" in build.output


@pytest.mark.parametrize("members", [p.values[0] for p in UNSAFE], ids=[p.id for p in UNSAFE])
def test_pythons_without_extraction_filters_refuse_the_same_tarballs(monkeypatch, tmp_path, members) -> None:
    """Python 3.11.0–3.11.3 (Debian 12's python3 is 3.11.2) have no tarfile filters: the same checks hold."""
    monkeypatch.setattr(archive, "HAS_FILTERS", False)
    outside, dest, source = tmp_path / "outside", tmp_path / "dest", tmp_path / "source.tgz"
    outside.mkdir()
    source.write_bytes(evil_tarball(*members(outside)))
    with pytest.raises(archive.ArchiveError, match="has an unsafe entry"):
        archive.extract(source, dest, what="source tarball")
    assert everything_under(outside) == []


def test_pythons_without_extraction_filters_unpack_modes_as_the_data_filter_does(monkeypatch, tmp_path) -> None:
    files = {"bin/run": 0o777, "setuid": 0o4755, "d/shared": 0o666}
    members = []
    for name, mode in files.items():
        info = _file(name, b"x")
        info.mode = mode
        members.append((info, b"x"))
    source = tmp_path / "slug.tgz"
    source.write_bytes(evil_tarball(*members, (_link("ln", "bin/run"), b"")))
    made = {}
    for compat in (False, True):
        monkeypatch.setattr(archive, "HAS_FILTERS", not compat and hasattr(tarfile, "data_filter"))
        dest = tmp_path / f"dest-{compat}"
        archive.extract(source, dest, what="slug", any_link_target=True)
        made[compat] = {p.relative_to(dest).as_posix(): oct(p.lstat().st_mode) for p in everything_under(dest)}
    assert made[True] == made[False]
    assert made[True]["setuid"] == oct(0o100755) and made[True]["d/shared"] == oct(0o100644)
