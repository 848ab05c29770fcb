"""A crashed replica's last lines, read while the kubelet restarts it (issue 22: they came back empty
one run in two on a busy machine, when the read fell between the crash and the log being served)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.runtime.kubernetes import rollout


class LateLog:
    """The previous container's log is served only from the `ready_after`-th read on; the current one is empty."""

    def __init__(self, ready_after: int | None) -> None:
        self.reads: list[bool] = []
        self.ready_after = ready_after

    async def __call__(self, kube: Any, namespace: str, pod: str, container: str, lines: int,
                       previous: bool = False) -> list[str]:
        self.reads.append(previous)
        ready = self.ready_after is not None and len(self.reads) >= self.ready_after
        return ["boom: no module named wsgi"] if previous and ready else []


@pytest.mark.asyncio
async def test_the_lines_are_read_again_until_they_are_there(monkeypatch: pytest.MonkeyPatch) -> None:
    late = LateLog(ready_after=5)
    monkeypatch.setattr(rollout, "tail", late)
    monkeypatch.setattr(rollout, "LOG_RETRY", 0.01)
    lines = await rollout.last_lines(None, "ns", "web-1", "web", previous=False, wait=30)  # type: ignore[arg-type]
    assert lines == ["boom: no module named wsgi"]
    assert True in late.reads and False in late.reads  # both the current and the previous container's log


@pytest.mark.asyncio
async def test_a_log_that_never_comes_is_given_up_on_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    late = LateLog(ready_after=None)
    monkeypatch.setattr(rollout, "tail", late)
    monkeypatch.setattr(rollout, "LOG_RETRY", 0.01)
    assert await rollout.last_lines(None, "ns", "web-1", "web", previous=False, wait=0.1) == []  # type: ignore[arg-type]
    assert len(late.reads) > 2
