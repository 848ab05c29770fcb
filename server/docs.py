"""Generates docs/commands.md from the command table: `python -m server.docs > docs/commands.md`."""

from __future__ import annotations

import argparse
import sys

from core.commands import TABLE, Command
from server.registry import load_commands

HEADER = """\
# Teresa command reference

Generated from the command table by `make docs` (`python -m server.docs`); do not
edit by hand: a test fails when this file is stale.

Every command runs over SSH as the authenticated user
(`ssh -p 2222 git@HOST COMMAND ...`) and on the server host as the local
operator (`teresa COMMAND ...`), except the server-host-only commands marked
below. Output goes to stdout; an error is one line on stderr and a non-zero
exit status. List and info commands accept `--json`.
"""


def _arguments(cmd: Command) -> list[str]:
    lines = []
    for action in cmd.parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        metavar = " ".join(action.metavar) if isinstance(action.metavar, tuple) else action.metavar
        name = ", ".join(action.option_strings) or (metavar or action.dest)
        if action.option_strings and metavar:
            name += f" {metavar}"
        required = " (required)" if action.required and action.option_strings else ""
        lines.append(f"- `{name}`{required}: {action.help or ''}".rstrip(": "))
    return lines


def render_command(cmd: Command) -> list[str]:
    lines = [f"## `{cmd.name}`", "", cmd.summary, "", f"Usage: `{cmd.usage}`", ""]
    if arguments := _arguments(cmd):
        lines += ["Arguments:", "", *arguments, ""]
    if cmd.stdin:
        lines += [f"Standard input: {cmd.stdin}.", ""]
    where = "on the server host only" if cmd.local_only else "over SSH and on the server host"
    lines += [f"Who may run it: {cmd.access}; {where}.", ""]
    if cmd.example:
        lines += ["Example:", "", "```sh", cmd.example, "```", ""]
    return lines


def render() -> str:
    load_commands()
    commands = sorted(TABLE.values(), key=lambda c: c.name)
    lines = [HEADER, "| Command | What it does |", "| --- | --- |"]
    lines += [f"| [`{c.name}`](#{c.name.replace(':', '')}) | {c.summary} |" for c in commands]
    lines.append("")
    for cmd in commands:
        lines += render_command(cmd)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
