"""Validation of the names users choose. Each check raises CommandError with the fix."""

from __future__ import annotations

import re

from core.errors import CommandError, shown
from core.process_types import PROCESS_TYPE, PROCESS_TYPE_RULE

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
RESERVED_APPS = {"default", "teresa", "kube-system", "kube-public", "kube-node-lease"}
MAX_LABEL = 63


def _label(kind: str, value: str) -> str:
    if len(value) > MAX_LABEL or not DNS_LABEL.match(value):
        raise CommandError(
            f"{kind} name '{shown(value)}' is not valid; use 1 to {MAX_LABEL} lowercase letters, digits "
            "and dashes, starting with a letter and not ending with a dash (like my-app)."
        )
    return value


def app_name(value: str) -> str:
    _label("app", value)
    if value in RESERVED_APPS or value.startswith("kube-"):
        raise CommandError(f"app name '{value}' is reserved; choose another name.")
    return value


def team_name(value: str) -> str:
    return _label("team", value)


def email(value: str) -> str:
    if len(value) > 254 or not EMAIL.match(value):
        raise CommandError(f"'{shown(value)}' is not an email address; give one like alice@example.com.")
    return value.lower()


def key_name(value: str) -> str:
    if not KEY_NAME.match(value):
        raise CommandError(
            f"key name '{shown(value)}' is not valid; use up to 64 letters, digits, dots, dashes, "
            "underscores or @, starting with a letter or digit (like laptop)."
        )
    return value


HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CONFIG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_CONFIG = {"PORT", "DYNO", "HOME"}
def hostname(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    labels = host.split(".")
    # Browsers read a name whose last label is a number (127.1, 10.0.0.1, 0x7f.1) as an IP address.
    if re.fullmatch(r"\d+|0x[0-9a-f]*", labels[-1]) or ":" in host or host.startswith("["):
        raise CommandError(f"'{shown(value)}' is an IP address; give a host name like www.example.com.")
    if len(host) > 253 or len(labels) < 2 or not all(len(l) <= 63 and HOSTNAME_LABEL.match(l) for l in labels):
        raise CommandError(f"'{shown(value)}' is not a host name; give one like www.example.com.")
    return host


def is_config_name(value: str) -> bool:
    """Whether `value` has the grammar of a config var name (reserved or not)."""
    return len(value) <= 255 and CONFIG_NAME.fullmatch(value) is not None


def config_name(value: str) -> str:
    if not is_config_name(value):
        raise CommandError(f"'{shown(value)}' is not a valid config var name; use letters, digits and underscores, "
                           "not starting with a digit (like DATABASE_URL).")
    if value in RESERVED_CONFIG or value.startswith("TERESA_"):
        raise CommandError(f"{value} is reserved: Teresa sets it for every process; choose another name.")
    return value


def process_type(value: str) -> str:
    if not PROCESS_TYPE.match(value):
        raise CommandError(f"'{shown(value)}' is not a process type; {PROCESS_TYPE_RULE}.")
    return value
