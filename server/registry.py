"""Importing the modules that define commands fills the command table."""

from __future__ import annotations


def load_commands() -> None:
    import controller.build_commands  # noqa: F401
    import controller.commands  # noqa: F401
    import controller.notifications.commands  # noqa: F401
    import controller.release_commands  # noqa: F401
    import controller.resource_commands  # noqa: F401
    import core.backup_commands  # noqa: F401
    import keys.commands  # noqa: F401
    import server.builtin_commands  # noqa: F401
    import server.local_commands  # noqa: F401
