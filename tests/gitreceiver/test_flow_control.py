"""The receive window re-opens only by what the server does not still hold."""

from __future__ import annotations

from types import SimpleNamespace

from asyncssh.channel import SSHChannel

from gitreceiver import flow_control

WINDOW = 2 * 1024 * 1024


def channel_after_a_pause(held_packets: int) -> SimpleNamespace:
    """A channel that took a full window while paused and now hands the first packet over."""
    adjusts: list[int] = []
    received: list[bytes] = []
    chunk = b"x" * 32768
    channel = SimpleNamespace(
        _recv_buf=[(chunk, None)] * held_packets, _recv_window=WINDOW - 32768 * (held_packets + 1),
        _init_recv_window=WINDOW, _encoding=None, logger=SimpleNamespace(debug2=lambda *a: None),
        _session=SimpleNamespace(data_received=lambda data, kind: received.append(data)),
        send_packet=lambda kind, payload: adjusts.append(int.from_bytes(payload, "big")),
        adjusts=adjusts, received=received,
    )
    return channel


def test_window_adjust_counts_the_data_still_held() -> None:
    flow_control.install()
    assert SSHChannel._deliver_data is flow_control._deliver_counting_held_data
    held = 60  # about 1.9 MB still buffered in the channel
    channel = channel_after_a_pause(held)
    SSHChannel._deliver_data(channel, b"x" * 32768, None)
    # Unpatched, asyncssh would grant the whole 2 MB again on top of the 1.9 MB it holds.
    assert channel.adjusts == []
    assert channel._recv_window + held * 32768 <= WINDOW

    channel = channel_after_a_pause(0)  # nothing held and the window below half: the usual refresh
    channel._recv_window = WINDOW // 4
    SSHChannel._deliver_data(channel, b"x" * 32768, None)
    assert channel.adjusts == [WINDOW - WINDOW // 4] and channel._recv_window == WINDOW
    assert channel.received == [b"x" * 32768]
