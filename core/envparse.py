"""The shapes a setting's value takes, and the error a bad one raises.

A shape is a function `(name, value, default) -> parsed`: `name` is the variable (for the sentence),
`value` what the environment holds — stripped unless the setting keeps it as given, and never empty: an
unset setting takes its default without being parsed — and `default` the declared default, which the
sentence offers as an example ("set a number like 900"). Settings are declared in core/setting.py.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Callable, TypeVar, Union

T = TypeVar("T")
Parse = Callable[[str, str, T], T]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class ConfigError(Exception):
    """A setting has a value Teresa cannot use; the message names it and the fix."""


def text(name: str, value: str, default: str) -> str:
    return value


def lowercase(name: str, value: str, default: str) -> str:
    return value.lower()


def boolean(name: str, value: str, default: bool) -> bool:
    value = value.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false.")


def integer(name: str, value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number; set a number like {default}.") from None


def positive(name: str, value: str, default: int) -> int:
    number = integer(name, value, default)
    if number <= 0:
        raise ConfigError(f"{name}={number} must be a positive whole number; set a number like {default}.")
    return number


def at_least_one(name: str, value: str, default: int) -> int:
    """A whole number; 0 or less counts as 1."""
    return max(1, integer(name, value, default))


def non_negative(fix: str) -> Parse[int]:
    """A whole number, 0 included; `fix` says what to give instead of a negative one."""
    def parse(name: str, value: str, default: int) -> int:
        number = integer(name, value, default)
        if number < 0:
            raise ConfigError(f"{name}={number} is negative; {fix}.")
        return number
    return parse


def seconds(name: str, value: str, default: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise ConfigError(f"{name}={value!r} is not a positive number of seconds; set one like {default:g}.")
    return number


def one_of(*choices: str, use: str = "") -> Parse[str]:
    """One of `choices`, in any case; `use` words the choices in the sentence (default: "a or b")."""
    def parse(name: str, value: str, default: str) -> str:
        value = value.lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} is not supported; use {use or ' or '.join(choices)}.")
        return value
    return parse


def path(name: str, value: str, default: Path) -> Path:
    return Path(value)


def absolute_path(name: str, value: str, default: Path | None) -> Path:
    return Path(value).absolute()


def address(name: str, value: str, default: tuple[str, int]) -> tuple[str, int]:
    return parse_addr(value, name)


def parse_addr(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}={value!r} is not HOST:PORT; set it like 127.0.0.1:2222.")
    return host.strip("[]") or "0.0.0.0", int(port)


def networks(name: str, value: str, default: tuple[Network, ...]) -> tuple[Network, ...]:
    """CIDRs or addresses, separated by commas or spaces."""
    found = []
    for item in value.replace(",", " ").split():
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name} has {item!r}, which is not an address or CIDR; "
                              "list them like 10.0.0.0/8, 192.168.1.5.") from None
    return tuple(found)


def comma_list(name: str, value: str, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())
