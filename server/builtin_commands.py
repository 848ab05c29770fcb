"""Commands about the command interface itself."""

from __future__ import annotations

from importlib.metadata import version as package_version

from core.commands import ANYONE, CommandError, Invocation, arg, command, lookup, shown, visible_commands
from core.services import Services


@command("help", "List the commands, or show how to use one.",
         arg("command", nargs="?", metavar="COMMAND", help="a command to explain"), example="help apps:create")
async def help_command(inv: Invocation[Services]) -> None:
    if inv.args.command:
        try:
            cmd = lookup(inv.args.command, inv.remote)
        except CommandError:
            raise CommandError(f"unknown command '{shown(inv.args.command)}'; run 'help' to list the commands.") from None
        await inv.print(f"usage: {cmd.usage}")
        await inv.print(f"\n{cmd.summary}")
        for action in cmd.parser._actions:
            if action.help:
                await inv.print(f"  {'/'.join(action.option_strings) or action.metavar or action.dest:<14} {action.help}")
        if cmd.stdin:
            await inv.print(f"\nstdin: {cmd.stdin}")
        await inv.print(f"who may run it: {cmd.access}")
        if cmd.example:
            await inv.print(f"example: {cmd.example}")
        return
    commands = visible_commands(inv.remote)
    width = max(len(c.name) for c in commands)
    await inv.print("Teresa commands (help COMMAND for details):")
    for cmd in commands:
        await inv.print(f"  {cmd.name:<{width}}  {cmd.summary}")


@command("version", "Show Teresa's version.", access=ANYONE, example="version")
async def version_command(inv: Invocation[Services]) -> None:
    await inv.print(f"teresa {package_version('teresa')}")
