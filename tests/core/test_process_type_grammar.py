"""One grammar for process types: what a Procfile may declare, the command line accepts and Kubernetes can name."""

from __future__ import annotations

import pytest

from builder.procfile import ProcfileError, parse
from controller.runtime.kubernetes.meta import ManifestError, object_name
from core import names
from core.commands import CommandError

CANDIDATES = ["web", "worker", "worker-2", "w", "a" * 30, "a" * 31, "1web", "worker_1", "Web", "web-", "-web",
              "clock2", "release", "cron-nightly", "wörker", "web.1"]


def _accepted(check, value: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        check(value)
    except (ProcfileError, CommandError, ManifestError):
        return False
    return True


@pytest.mark.parametrize("value", CANDIDATES)
def test_the_procfile_the_command_line_and_kubernetes_agree(value: str) -> None:
    in_procfile = _accepted(lambda v: parse(f"{v}: run\n"), value)
    on_command_line = _accepted(names.process_type, value)
    on_kubernetes = _accepted(object_name, value)
    assert in_procfile == on_command_line == on_kubernetes, (in_procfile, on_command_line, on_kubernetes)


def test_the_rule_rejects_what_once_built_but_could_not_be_scaled() -> None:
    assert not _accepted(names.process_type, "1web")
    assert _accepted(names.process_type, "worker_1") and _accepted(lambda v: parse(f"{v}: run\n"), "worker_1")
    assert object_name("worker_1") == "worker-1"
