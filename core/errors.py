"""The one base of the failures a user can cause or must hear about: the message is their sentence.

`CommandError` (a wrong command, no permission; `core.commands` re-exports it) and the runtime's
failures (`controller.runtime.base.RuntimeFailure`) both derive from it, and
the command boundary (`core.commands.execute`) prints any of them as one line.
"""

from __future__ import annotations

# Kept free of imports: the slugrunner and slugbuilder import it (through core.names) at every start.


class UserError(Exception):
    """Its message is one sentence saying what is wrong and what to do."""

    exit_status = 1


class CommandError(UserError):
    """A wrong command line, an unknown app, a missing permission: one sentence saying what to do."""


class PermissionDenied(CommandError):
    pass


def printable(text: str) -> str:
    """User-supplied text safe to print to a terminal: each character that is not printable (a control
    character such as an escape sequence's ESC, a bidirectional override) written as an escape, like \\x1b."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(text: str, limit: int = 40) -> str:
    """A user-supplied value, safe to echo in an error: printable and short."""
    clean = printable(text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def internal_error(reference: str) -> str:
    """The line a user reads when Teresa itself failed; `reference` finds the traceback in the server log."""
    return f"error: internal error (reference {reference}); the operator can find it in the server log.\n"
