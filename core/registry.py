"""Importing the modules that define commands fills the command table."""

from __future__ import annotations


def load_commands() -> None:
    import controller.commands  # noqa: F401
    import controller.release_commands  # noqa: F401
    import core.builtin_commands  # noqa: F401
    import core.local_commands  # noqa: F401
    import gitreceiver.commands  # noqa: F401
    import keys.commands  # noqa: F401
