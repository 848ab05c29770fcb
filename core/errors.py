"""The one base of the failures a user can cause or must hear about: the message is their sentence.

`core.commands.CommandError` (a wrong command, no permission) and the runtime's
failures (`controller.runtime.base.RuntimeFailure`) both derive from it, and
the command boundary (`core.commands.execute`) prints any of them as one line.
"""

from __future__ import annotations


class UserError(Exception):
    """Its message is one sentence saying what is wrong and what to do."""

    exit_status = 1
