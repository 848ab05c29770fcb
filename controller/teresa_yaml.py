"""The app's `teresa.yaml`: health checks, rolling updates, drain time, cron schedules.

Parsing is strict: an unknown field or a bad value is one sentence that names
the field and what is allowed, raised as `TeresaYamlError`.

The file comes from whoever pushes, so parsing is bounded too: at most
MAX_BYTES of text, nesting at most MAX_DEPTH deep, and at most MAX_NODES
values once aliases are expanded (a 363-byte "billion laughs" file of nested
aliases otherwise grows to gigabytes the moment anything walks or prints it).
Error messages show at most a short, truncated rendering of a value.
Parse it off the event loop: it is CPU work on untrusted input.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import yaml

CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")
PERCENT = re.compile(r"^(\d{1,3})%$")


MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_NODES = 10_000  # scalars, sequences and mappings, each alias counted as the size of what it names


class TeresaYamlError(ValueError):
    pass


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40


def _shown(value: Any) -> str:
    """A pushed value, safe to put into an error message: a short, truncated, printable repr."""
    text = "".join(c if c.isprintable() else "?" for c in _REPR.repr(value))
    return text if len(text) <= 60 else text[:59] + "…"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested too deep or too big once aliases expand."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TeresaYamlError(f"teresa.yaml nests deeper than {MAX_DEPTH} levels; flatten it.")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has with every alias expanded, stopping past MAX_NODES.

    Aliases share node objects, so each distinct node is sized once (memoized): linear in the
    size of the text whatever the aliases multiply to. A node that contains itself is infinite.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            return MAX_NODES + 1
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                break
        in_progress.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _load(text: str | bytes) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise TeresaYamlError(f"teresa.yaml expands to more than {MAX_NODES} values (through its aliases); "
                                  "write the values out instead of repeating aliases.")
        return loader.construct_document(node)
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Probe:
    path: str = "/"
    timeout_seconds: int = 1
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True)
class RollingUpdate:
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"

    def resolve(self, replicas: int) -> tuple[int, int]:
        """Absolute (surge, unavailable) for `replicas`, rounded as Kubernetes does."""
        surge = _scaled(self.max_surge, replicas, round_up=True)
        unavailable = _scaled(self.max_unavailable, replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1 if replicas else 0
        return surge, unavailable


@dataclass(frozen=True)
class AppSpec:
    liveness: Probe | None = None
    readiness: Probe | None = None
    rolling_update: RollingUpdate = field(default_factory=RollingUpdate)
    drain_timeout_seconds: int = 10
    cron_schedule: str | None = None
    cron_schedules: dict[str, str] = field(default_factory=dict)

    def schedule_for(self, process_type: str) -> str | None:
        return self.cron_schedules.get(process_type, self.cron_schedule)


def _scaled(value: int | str, replicas: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    match = PERCENT.match(value)
    assert match is not None, f"{value!r} was validated at parse time"
    percent = int(match.group(1))
    scaled = percent * replicas / 100
    return int(-(-scaled // 1)) if round_up else int(scaled // 1)


PROBE_FIELDS = {
    "path": "path",
    "timeoutSeconds": "timeout_seconds",
    "initialDelaySeconds": "initial_delay_seconds",
    "periodSeconds": "period_seconds",
    "failureThreshold": "failure_threshold",
    "successThreshold": "success_threshold",
}
PROBE_MINIMUM = {"timeoutSeconds": 1, "initialDelaySeconds": 0, "periodSeconds": 1,
                 "failureThreshold": 1, "successThreshold": 1}


def decode(raw: bytes | None) -> str:
    """The text of a pushed teresa.yaml ("" when there is none); it may be cut after MAX_BYTES + 1 bytes."""
    if raw is not None and len(raw) > MAX_BYTES:
        raise TeresaYamlError(f"teresa.yaml is larger than {MAX_BYTES // 1024} KiB; keep it to the settings "
                              "Teresa reads.")
    try:
        return raw.decode("utf-8") if raw else ""
    except UnicodeDecodeError:
        raise TeresaYamlError("teresa.yaml is not UTF-8 text; save it as UTF-8.") from None


def parse(text: str | bytes | None) -> AppSpec:
    """Parse the contents of teresa.yaml; empty or missing means all defaults."""
    if text is None:
        return AppSpec()
    if len(text) > MAX_BYTES:
        raise TeresaYamlError(f"teresa.yaml is larger than {MAX_BYTES // 1024} KiB; keep it to the settings "
                              "Teresa reads.")
    try:
        data = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TeresaYamlError(f"teresa.yaml is not valid YAML{where}; fix its syntax.") from None
    if data is None:
        return AppSpec()
    top = _mapping(data, "teresa.yaml", {"healthCheck", "rollingUpdate", "lifecycle", "cron"})
    health = _mapping(top.get("healthCheck", {}), "healthCheck", {"liveness", "readiness"})
    liveness = _probe(health["liveness"], "healthCheck.liveness") if "liveness" in health else None
    if liveness and liveness.success_threshold != 1:
        raise TeresaYamlError("healthCheck.liveness.successThreshold must be 1 (Kubernetes allows no other value for liveness).")
    readiness = _probe(health["readiness"], "healthCheck.readiness") if "readiness" in health else None
    return AppSpec(
        liveness=liveness,
        readiness=readiness,
        rolling_update=_rolling_update(top.get("rollingUpdate", {})),
        drain_timeout_seconds=_drain_timeout(top.get("lifecycle", {})),
        **_cron(top.get("cron", {})),
    )


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TeresaYamlError(f"{where} must be a mapping of fields ({', '.join(sorted(allowed))}).")
    unknown = sorted(_shown(k) if not isinstance(k, str) else _shown(k)[1:-1] for k in value if k not in allowed)
    if unknown:
        raise TeresaYamlError(
            f"{where}.{unknown[0]} is not a known field; allowed fields are {', '.join(sorted(allowed))}."
            if where != "teresa.yaml"
            else f"teresa.yaml field '{unknown[0]}' is not known; allowed fields are {', '.join(sorted(allowed))}."
        )
    return value


def _integer(value: Any, where: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise TeresaYamlError(f"{where} must be a whole number {bounds}, not {_shown(value)}.")
    return value


def _probe(value: Any, where: str) -> Probe:
    data = _mapping(value, where, set(PROBE_FIELDS))
    kwargs: dict[str, Any] = {}
    for name, attr in PROBE_FIELDS.items():
        if name not in data:
            continue
        if name == "path":
            path = data[name]
            if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
                raise TeresaYamlError(f"{where}.path must be a URL path starting with '/', like /healthz, not {_shown(path)}.")
            kwargs[attr] = path
        else:
            kwargs[attr] = _integer(data[name], f"{where}.{name}", PROBE_MINIMUM[name], 3600)
    return Probe(**kwargs)


def _surge_value(value: Any, where: str) -> int | str:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := PERCENT.match(value.strip())) and int(m.group(1)) <= 100:
        return value.strip()
    raise TeresaYamlError(f"{where} must be a whole number or a percentage like \"25%\", not {_shown(value)}.")


def _rolling_update(value: Any) -> RollingUpdate:
    data = _mapping(value, "rollingUpdate", {"maxSurge", "maxUnavailable"})
    defaults = RollingUpdate()
    update = RollingUpdate(
        max_surge=_surge_value(data["maxSurge"], "rollingUpdate.maxSurge") if "maxSurge" in data else defaults.max_surge,
        max_unavailable=(
            _surge_value(data["maxUnavailable"], "rollingUpdate.maxUnavailable")
            if "maxUnavailable" in data else defaults.max_unavailable
        ),
    )
    if update.max_surge in (0, "0%") and update.max_unavailable in (0, "0%"):
        raise TeresaYamlError("rollingUpdate.maxSurge and rollingUpdate.maxUnavailable cannot both be 0; raise one of them.")
    return update


def _drain_timeout(value: Any) -> int:
    lifecycle = _mapping(value, "lifecycle", {"preStop"})
    pre_stop = _mapping(lifecycle.get("preStop", {}), "lifecycle.preStop", {"drainTimeoutSeconds"})
    if "drainTimeoutSeconds" not in pre_stop:
        return 10
    return _integer(pre_stop["drainTimeoutSeconds"], "lifecycle.preStop.drainTimeoutSeconds", 0, 30)


def _schedule(value: object, where: str) -> str:
    fields = value.split() if isinstance(value, str) else []
    if not (5 <= len(fields) <= 6) or not all(CRON_FIELD.match(f) for f in fields):
        if not (isinstance(value, str) and value.strip().startswith("@") and len(fields) == 1):
            raise TeresaYamlError(f"{where} must be a cron schedule like \"*/5 * * * *\", not {_shown(value)}.")
    assert isinstance(value, str)  # anything else has no fields and was refused above
    return value.strip()


def _cron(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TeresaYamlError("cron must be a mapping with a schedule, like cron: {schedule: \"*/5 * * * *\"}.")
    result: dict[str, Any] = {"cron_schedules": {}}
    for key, item in value.items():
        if key == "schedule":
            result["cron_schedule"] = _schedule(item, "cron.schedule")
        elif isinstance(key, str) and key.startswith("cron"):
            name = _shown(key)[1:-1]
            entry = _mapping(item, f"cron.{name}", {"schedule"})
            if "schedule" not in entry:
                raise TeresaYamlError(f"cron.{name} needs a schedule, like schedule: \"0 * * * *\".")
            result["cron_schedules"][key] = _schedule(entry["schedule"], f"cron.{name}.schedule")
        else:
            raise TeresaYamlError(
                f"cron.{_shown(key)} is not a known field; use cron.schedule, or cron.<process type starting with "
                "cron>.schedule."
            )
    return result
