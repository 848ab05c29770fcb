"""The Procfile: one `type: command` line per process type."""

from __future__ import annotations

import re

from core.process_types import PROCESS_TYPE, PROCESS_TYPE_RULE, kubernetes_name

LINE_PATTERN = re.compile(r"^(?P<type>[^:\s]*)\s*:\s*(?P<command>.*?)\s*$")


class ProcfileError(ValueError):
    """The Procfile cannot be used; the message names the line and the expected form."""


def parse(text: str) -> dict[str, str]:
    """Process type -> command, in file order. Blank lines and `#` comments are skipped."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE_PATTERN.match(line)
        if not match or not match["command"]:
            raise ProcfileError(f"Procfile line {number} is not `type: command` (got {line!r}); write it like `web: python app.py`.")
        kind = match["type"]
        if not PROCESS_TYPE.match(kind):
            raise ProcfileError(f"Procfile line {number}: process type {kind[:40]!r} is not valid; {PROCESS_TYPE_RULE}.")
        if kind in processes:
            raise ProcfileError(f"Procfile line {number}: process type {kind!r} is declared twice; keep one line per type.")
        twin = next((other for other in processes if kubernetes_name(other) == kubernetes_name(kind)), None)
        if twin is not None:
            raise ProcfileError(f"Procfile line {number}: process types {twin!r} and {kind!r} differ only by '_' and "
                                "'-', which name the same Kubernetes objects; rename one.")
        processes[kind] = match["command"]
    return processes


def render(processes: dict[str, str]) -> str:
    return "".join(f"{kind}: {command}\n" for kind, command in processes.items())
