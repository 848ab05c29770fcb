"""Ports for the processes Teresa and its tests start: never from the range outgoing connections use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core import ports
from tests.fixtures import s3


def test_ports_come_from_below_the_ephemeral_range_and_are_free() -> None:
    low, _ = ports.ephemeral_range()
    picked = ports.free_ports(50)
    assert len(set(picked)) == 50
    assert all(ports.LOWEST <= port < low for port in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_skipped() -> None:
    walk = ports._walk()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        taken.listen()
        held = taken.getsockname()[1]
        # the walk goes round the whole range: the held port comes up once per lap
        lap = len(ports._candidates())
        assert held not in {ports.free_port() for _ in range(lap + 1)}
    assert walk is ports._walk()


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [("32768\t60999\n", range(20000, 32768)), ("20500 60999", range(61000, 65536)), ("1024 65535", range(20000, 65536))],
)
def test_the_range_follows_the_kernels_setting(
    ephemeral: str, expected: range, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text(ephemeral)
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", setting)
    assert ports._candidates() == expected


def test_seaweedfs_whose_port_was_taken_meanwhile_starts_again_on_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What CI saw once: another process took the S3 port between its choice and SeaweedFS's bind."""
    real = ports.free_ports
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", real(1)[0]))
        thief.listen()
        stolen = thief.getsockname()[1]
        calls: list[int] = []

        def first_with_the_stolen_port(count: int, host: str = "127.0.0.1") -> list[int]:
            chosen = real(count, host)
            calls.append(count)
            return [*chosen[:-2], stolen, chosen[-1]] if len(calls) == 1 else chosen  # -s3.port is 7th of 8

        monkeypatch.setattr(s3, "free_ports", first_with_the_stolen_port)
        with s3.running_seaweedfs(tmp_path) as settings:
            assert not settings.aws_endpoint.endswith(f":{stolen}")
            assert len(calls) == 2
            assert "address already in use" in (tmp_path / "weed-1.log").read_text()
