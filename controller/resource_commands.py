"""Resource commands: CPU and memory limits, autoscaling, and the Kubernetes manifests of an app."""

from __future__ import annotations

import dataclasses
import re


from controller.platform import Platform
from controller.spec import Autoscale
from core import names
from core.commands import APP, APP_TEAM, CommandError, Invocation, arg, command, shown
from core.quantity import parse_quantity
from keys import access

CPU = re.compile(r"^(\d+m|\d+(\.\d{1,3})?)$")
MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _quantity(value: str | None, pattern: re.Pattern[str], flag: str, example: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise CommandError(f"{flag} {shown(value)} is not a Kubernetes quantity; write it like {example}.")
    return value


def _within(value: str | None, most: str, flag: str, setting: str) -> None:
    """Refuse a quantity over the operator's maximum, naming the setting."""
    if value is not None and parse_quantity(value) > parse_quantity(most):
        raise CommandError(f"{flag} {value} is more than this server allows ({setting}={most}); "
                           f"ask for {most} or less, or ask the operator to raise {setting}.")


async def _report(inv: Invocation[Platform], version: int | None) -> None:
    if version is None:
        await inv.print("Saved; it takes effect with the first push.")


@command("limits", "Show an app's CPU and memory limits per process type.", APP, json=True, access=APP_TEAM,
         example="limits myapp")
async def limits_show(inv: Invocation[Platform]) -> None:
    stored = await inv.services.db.run(lambda s: dict(access.app_for(s, inv.actor, inv.args.app).limits or {}))
    await inv.print_listing(stored, f"{inv.args.app} uses the cluster's default limits.",
                            ["TYPE", "CPU", "MEMORY"],
                            [["all" if t == "*" else t, v.get("cpu", "-"), v.get("memory", "-")] for t, v in sorted(stored.items())])


@command("limits:set", "Set CPU and memory limits (Kubernetes) for one process type or all; makes a release.", APP,
         arg("--type", metavar="TYPE", help="only this process type (default: all)"),
         arg("--cpu", metavar="CPU", help="like 500m or 2"), arg("--memory", metavar="MEMORY", help="like 512Mi"),
         access=APP_TEAM, example="limits:set myapp --type web --cpu 500m --memory 512Mi", mutating=True)
async def limits_set(inv: Invocation[Platform]) -> None:
    cpu = _quantity(inv.args.cpu, CPU, "--cpu", "500m or 2")
    memory = _quantity(inv.args.memory, MEMORY, "--memory", "512Mi or 2Gi")
    if cpu is None and memory is None:
        raise CommandError("give --cpu, --memory or both, like: limits:set myapp --cpu 500m --memory 512Mi")
    k8s = inv.services.settings.kubernetes
    _within(cpu, k8s.max_limit_cpu, "--cpu", "TERESA_MAX_LIMIT_CPU")
    _within(memory, k8s.max_limit_memory, "--memory", "TERESA_MAX_LIMIT_MEMORY")
    kind = names.process_type(inv.args.type) if inv.args.type else "*"

    await inv.services.db.run(lambda s: access.app_for(s, inv.actor, inv.args.app))
    limits = {**({"cpu": cpu} if cpu else {}), **({"memory": memory} if memory else {})}
    await _report(inv, await inv.services.controller.set_limits(inv.args.app, kind, limits, inv.actor, inv.print))


@command("autoscale:set", "Scale a process type on CPU use between --min and --max (Kubernetes); makes a release.",
         APP, arg("--min", type=int, required=True, metavar="N", help="fewest replicas"),
         arg("--max", type=int, required=True, metavar="N", help="most replicas"),
         arg("--cpu", type=int, required=True, metavar="PERCENT", help="target CPU use, percent of the request"),
         arg("--type", default="web", metavar="TYPE", help="the process type (default web)"), access=APP_TEAM,
         example="autoscale:set myapp --min 2 --max 10 --cpu 70", mutating=True)
async def autoscale_set(inv: Invocation[Platform]) -> None:
    try:
        autoscale = Autoscale(inv.args.min, inv.args.max, inv.args.cpu, names.process_type(inv.args.type))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    most = inv.services.settings.kubernetes.max_replicas
    if autoscale.max_replicas > most:
        raise CommandError(f"--max {autoscale.max_replicas} is more than this server allows (TERESA_MAX_REPLICAS={most}); "
                           f"ask for {most} or less, or ask the operator to raise TERESA_MAX_REPLICAS.")

    await inv.services.db.run(lambda s: access.app_for(s, inv.actor, inv.args.app))
    reason = (f"autoscale {autoscale.process_type} {autoscale.min_replicas}-{autoscale.max_replicas} "
              f"at {autoscale.cpu_percent}% CPU")
    await _report(inv, await inv.services.controller.set_autoscale(
        inv.args.app, dataclasses.asdict(autoscale), reason, inv.actor, inv.print))


@command("autoscale:unset", "Stop autoscaling; the formation's replica count applies again.", APP, access=APP_TEAM,
         example="autoscale:unset myapp", mutating=True)
async def autoscale_unset(inv: Invocation[Platform]) -> None:
    await inv.services.db.run(lambda s: access.app_for(s, inv.actor, inv.args.app))
    await _report(inv, await inv.services.controller.set_autoscale(inv.args.app, None, "autoscale off", inv.actor,
                                                                   inv.print))


@command("manifests", "Print every Kubernetes object Teresa applies for the app's current release (secrets masked).",
         APP, access=APP_TEAM, example="teresa manifests myapp")
async def manifests(inv: Invocation[Platform]) -> None:
    from controller.runtime.kubernetes.manifests import ManifestError, render_release, to_yaml

    await inv.services.db.run(lambda s: access.app_for(s, inv.actor, inv.args.app))
    release = await inv.services.controller.current_spec(inv.args.app)
    if release is None:
        raise CommandError(f"{inv.args.app} has no release yet; push to deploy it first.")
    try:
        objects = render_release(inv.services.settings, release, release.autoscale)
    except ManifestError as exc:
        raise CommandError(str(exc)) from None
    await inv.out.write(to_yaml(objects, mask=True))


