"""Every command is found: command modules are discovered on disk, and no command is defined elsewhere."""

from __future__ import annotations

import re

from core.commands import TABLE
from server.registry import FRAMEWORK, PACKAGES, ROOT, command_modules, load_commands

DEFINES = re.compile(r"^@command\(", re.MULTILINE)


def test_commands_are_defined_only_in_command_modules() -> None:
    defining = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts)
                      for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                      if "buildpacks" not in path.parts and DEFINES.search(path.read_text()))
    assert defining == command_modules()
    assert FRAMEWORK not in command_modules()


def test_loading_fills_the_table_from_every_module() -> None:
    load_commands()
    modules = {command.handler.__module__ for command in TABLE.values()}
    assert set(command_modules()) <= modules
    assert {"apps:create", "keys:add", "audit", "notifications:add", "backup"} <= set(TABLE)
