"""Importing the modules that define commands fills the command table.

Commands are defined in modules named `commands.py` or `*_commands.py` anywhere under Teresa's
packages (`core/commands.py` is the framework itself); they are found on disk, so a new one is
never left out, and nothing else is imported to find them. tests/core/test_registry.py checks
that no command is defined anywhere else.
"""

from __future__ import annotations

import importlib
from pathlib import Path

PACKAGES = ("core", "keys", "builder", "controller", "gitreceiver", "server")
ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK = "core.commands"


def command_modules() -> list[str]:
    """Every module that defines commands, by its name."""
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*commands.py"):
            if path.stem == "commands" or path.stem.endswith("_commands"):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return sorted(name for name in found if name != FRAMEWORK)


def load_commands() -> None:
    for name in command_modules():
        importlib.import_module(name)
