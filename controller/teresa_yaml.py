"""The app's `teresa.yaml`: health checks, rolling updates, drain time, cron schedules.

Parsing is strict: an unknown field or a bad value is one sentence that names
the field and what is allowed, raised as `TeresaYamlError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")
PERCENT = re.compile(r"^(\d{1,3})%$")


class TeresaYamlError(ValueError):
    pass


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
    """The text of a pushed teresa.yaml ("" when there is none)."""
    try:
        return raw.decode("utf-8") if raw else ""
    except UnicodeDecodeError:
        raise TeresaYamlError("teresa.yaml is not UTF-8 text; save it as UTF-8.") from None


def parse(text: str | bytes | None) -> AppSpec:
    """Parse the contents of teresa.yaml; empty or missing means all defaults."""
    if text is None:
        return AppSpec()
    try:
        data = yaml.safe_load(text)
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
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise TeresaYamlError(
            f"{where}.{unknown[0]} is not a known field; allowed fields are {', '.join(sorted(allowed))}."
            if where != "teresa.yaml"
            else f"teresa.yaml field {unknown[0]!r} is not known; allowed fields are {', '.join(sorted(allowed))}."
        )
    return value


def _integer(value: Any, where: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise TeresaYamlError(f"{where} must be a whole number {bounds}, not {value!r}.")
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
                raise TeresaYamlError(f"{where}.path must be a URL path starting with '/', like /healthz, not {path!r}.")
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
    raise TeresaYamlError(f"{where} must be a whole number or a percentage like \"25%\", not {value!r}.")


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
            raise TeresaYamlError(f"{where} must be a cron schedule like \"*/5 * * * *\", not {value!r}.")
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
            entry = _mapping(item, f"cron.{key}", {"schedule"})
            if "schedule" not in entry:
                raise TeresaYamlError(f"cron.{key} needs a schedule, like schedule: \"0 * * * *\".")
            result["cron_schedules"][key] = _schedule(entry["schedule"], f"cron.{key}.schedule")
        else:
            raise TeresaYamlError(
                f"cron.{key} is not a known field; use cron.schedule, or cron.<process type starting with cron>.schedule."
            )
    return result
