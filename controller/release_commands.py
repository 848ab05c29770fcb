"""Commands that change or inspect what runs: config, processes, logs, releases, run, domains."""

from __future__ import annotations

import argparse
import itertools
import re
from typing import TypedDict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller import releases
from controller.platform import Platform
from core import names
from core.commands import ADMIN, APP, APP_TEAM, CommandError, Invocation, arg, command, shown
from core.models import Domain, Release, utc_text
from keys import access

MAX_CONFIG_VALUE = 32 * 1024
MAX_REPLICAS = 100
MASK = "********"
NUMBER = re.compile(r"^[0-9]{1,9}$")


class _ReleaseRow(TypedDict):
    """One release of `releases --json`."""
    version: str
    running: bool
    status: str
    reason: str
    user: str
    build: str
    created_at: str
    error: str


async def _check_app(inv: Invocation[Platform]) -> str:
    name: str = inv.args.app
    await inv.services.db.run(lambda s: access.app_for(s, inv.actor, name))
    return name


async def _released(inv: Invocation[Platform], version: int | None) -> None:
    if version is None:
        await inv.print("Saved; it takes effect with the first push.")


# --- config --------------------------------------------------------------------------------


@command("config", "Show an app's config vars (values masked unless --reveal).", APP,
         arg("--reveal", action="store_true", help="show the values"), json=True, access=APP_TEAM,
         example="config myapp --reveal")
async def config_show(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    config = await inv.services.controller.config_vars(app)
    shown = {k: (v if inv.args.reveal else MASK) for k, v in sorted(config.items())}
    await inv.print_listing(shown, f"{app} has no config vars; set some with: config:set {app} NAME=value",
                            ["NAME", "VALUE"], [[k, v] for k, v in shown.items()])


def _is_assignment(word: str) -> bool:
    """NAME=VALUE with NAME a config var name."""
    name, sep, _ = word.partition("=")
    return bool(sep) and names.is_config_name(name)


def _assignments(pairs: list[str]) -> dict[str, str]:
    updates: dict[str, str] = {}
    for position, pair in enumerate(pairs, 1):
        if not _is_assignment(pair):  # never echoed: a value may be in it ("DB_URL postgres://…")
            raise CommandError(f"argument {position} of config:set is not NAME=value (a name of letters, digits and "
                               "underscores, then '='); write it like DEBUG=1, quoted whole if the value has spaces.")
        name, _, value = pair.partition("=")
        names.config_name(name)
        if len(value.encode()) > MAX_CONFIG_VALUE:
            raise CommandError(f"the value of {name} is larger than {MAX_CONFIG_VALUE} bytes; store big data elsewhere.")
        updates[name] = value
    return updates


def _config_names(args: argparse.Namespace) -> dict[str, object]:
    """config:set in the audit log: the names, never the values, nor anything of an argument that is not NAME=value."""
    named = [pair.partition("=")[0] for pair in args.pairs if _is_assignment(pair)]
    malformed = len(args.pairs) - len(named)
    return {"names": sorted(set(named)), **({"malformed": malformed} if malformed else {})}


def _run_program(args: argparse.Namespace) -> dict[str, object]:
    """run in the audit log: the program's name, not its arguments (they may carry secrets), and the names of
    the NAME=VALUE words before it (`run app PGPASSWORD=… psql`), not their values."""
    words = [word for arg in args.argv if arg != "--" for word in arg.split()]  # one string is a shell line
    env = [word.partition("=")[0] for word in itertools.takewhile(_is_assignment, words)]
    program, masked, _ = (words[len(env)] if len(words) > len(env) else "").partition("=")
    return {"program": program + (f"={MASK}" if masked else ""), **({"env": env} if env else {})}


@command("config:set", "Set config vars and release them.", APP,
         arg("pairs", nargs="+", metavar="NAME=VALUE", help="the vars to set"), access=APP_TEAM,
         example="config:set myapp DEBUG=0 'GREETING=hello world'", mutating=True, audit_details=_config_names)
async def config_set(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    updates = _assignments(inv.args.pairs)
    version = await inv.services.controller.set_config(app, updates, [], inv.actor, inv.print)
    await inv.print(f"Set {', '.join(sorted(updates))} on {app}.")
    await _released(inv, version)


@command("config:unset", "Remove config vars and release the change.", APP,
         arg("names", nargs="+", metavar="NAME", help="the vars to remove"), access=APP_TEAM,
         example="config:unset myapp DEBUG", mutating=True)
async def config_unset(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    removals = [names.config_name(n) for n in inv.args.names]
    version = await inv.services.controller.set_config(app, {}, removals, inv.actor, inv.print)
    await inv.print(f"Unset {', '.join(removals)} on {app}.")
    await _released(inv, version)


# --- processes -------------------------------------------------------------------------------


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@command("ps", "List an app's processes: type, replica, state, restarts, uptime.", APP, json=True,
         access=APP_TEAM, example="ps myapp")
async def ps(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    processes = await inv.services.controller.runtime.ps(app)
    await inv.print_listing([p.__dict__ for p in processes], f"{app} runs no processes.",
                            ["PROCESS", "STATE", "RESTARTS", "UPTIME", "RELEASE"],
                            [[p.replica, p.state, p.restarts, _uptime(p.uptime_seconds), f"v{p.release}"] for p in processes])


def _formation(pairs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pair in pairs:
        kind, sep, number = pair.partition("=")
        names.process_type(kind)
        if not sep or not NUMBER.match(number) or int(number) > MAX_REPLICAS:
            raise CommandError(f"'{shown(pair)}' is not TYPE=N with N from 0 to {MAX_REPLICAS}; "
                               "write it like web=2.")
        counts[kind] = int(number)
    return counts


@command("ps:scale", "Set how many processes of each type run.", APP,
         arg("pairs", nargs="+", metavar="TYPE=N", help="process counts"), access=APP_TEAM,
         example="ps:scale myapp web=3 worker=1", mutating=True)
async def ps_scale(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    await inv.services.controller.scale(app, _formation(inv.args.pairs), inv.actor, inv.print)


@command("ps:restart", "Restart an app's processes (all, or one type), rolling.", APP,
         arg("type", nargs="?", metavar="TYPE", help="only this process type"), access=APP_TEAM,
         example="ps:restart myapp web", mutating=True)
async def ps_restart(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    kind = names.process_type(inv.args.type) if inv.args.type else None
    await inv.services.controller.restart(app, kind, inv.actor, inv.print)


@command("logs", "Show an app's process output; -f follows it.", APP,
         arg("-n", "--lines", type=int, default=100, metavar="N", help="how many recent lines (default 100)"),
         arg("-f", "--follow", action="store_true", help="keep printing new lines until you disconnect"),
         arg("-p", "--process", metavar="TYPE", help="only this process type"), access=APP_TEAM,
         example="logs myapp -n 50 -f -p web")
async def logs(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    if not 0 <= inv.args.lines <= 10000:
        raise CommandError("-n must be from 0 to 10000.")
    kind = names.process_type(inv.args.process) if inv.args.process else None
    async for line in inv.services.controller.runtime.logs(app, inv.args.lines, inv.args.follow, kind):
        await inv.print(line)


# Over SSH, stdin is forwarded as it comes; the local command line sends none (see server/control.py).
@command("run", "Run a one-off command with the app's slug and config, in a fresh copy of the release; exits with "
         "its status. Over SSH its stdin is forwarded, and `ssh -t` gives it a terminal (shells, consoles).", APP,
         arg("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run"),
         access=APP_TEAM, example="run myapp -- python manage.py migrate", mutating=True, audit_details=_run_program)
async def run(inv: Invocation[Platform]) -> int:
    app = await _check_app(inv)
    argv = inv.args.argv[1:] if inv.args.argv[:1] == ["--"] else inv.args.argv
    if not argv:
        raise CommandError(f"name the command to run, like: run {app} -- ls -la")
    release = await inv.services.controller.current_spec(app)
    if release is None:
        raise CommandError(f"{app} has no release yet; push to deploy it first.")
    return await inv.services.controller.runtime.run(release, argv, inv.stdin, inv.out)


# --- releases --------------------------------------------------------------------------------


@command("releases", "List an app's releases, newest first; * marks the running one.", APP, json=True,
         access=APP_TEAM, example="releases myapp")
async def releases_list(inv: Invocation[Platform]) -> None:
    def load(session: Session) -> list[_ReleaseRow]:
        app = access.app_for(session, inv.actor, inv.args.app)
        rows = session.scalars(select(Release).where(Release.app_id == app.id).order_by(Release.version.desc()))
        return [{"version": f"v{r.version}", "running": r.version == app.current_release, "status": r.status,
                 "reason": r.reason, "user": r.user, "build": r.build_id[:8],
                 "created_at": utc_text(r.created_at), "error": r.error}
                for r in rows]

    rows = await inv.services.db.run(load)
    await inv.print_listing(rows, f"{inv.args.app} has no releases; push to make the first.",
                            ["", "RELEASE", "STATUS", "REASON", "BY", "WHEN"],
                            [["*" if r["running"] else "", r["version"], r["status"], r["reason"], r["user"], r["created_at"]] for r in rows])


def _version(value: str) -> int:
    digits = value.removeprefix("v")
    if not NUMBER.match(digits):
        raise CommandError(f"'{shown(value)}' is not a release; give one like v3.")
    return int(digits)


@command("releases:rollback", "Release an earlier release's build and config again (default: the previous).", APP,
         arg("version", nargs="?", metavar="vN", help="the release to go back to"), access=APP_TEAM,
         example="releases:rollback myapp v3", mutating=True)
async def releases_rollback(inv: Invocation[Platform]) -> None:
    app = await _check_app(inv)
    version = _version(inv.args.version) if inv.args.version else None
    await inv.services.controller.rollback(app, version, inv.actor, inv.print)


# --- domains ---------------------------------------------------------------------------------


@command("domains", "List an app's domains.", APP, json=True, access=APP_TEAM, example="domains myapp")
async def domains_list(inv: Invocation[Platform]) -> None:
    def load(session: Session) -> tuple[list[str], list[str]]:
        app = access.app_for(session, inv.actor, inv.args.app)
        return list(releases.domains_of(session, app)), list(releases.pending_domains_of(session, app))

    custom, pending = await inv.services.db.run(load)
    default = f"{inv.args.app}.{inv.services.settings.domain}"
    if inv.args.json:
        await inv.print_json({"default": default, "custom": custom, "pending": pending})
        return
    await inv.print(f"{default} (default)")
    for host in custom:
        await inv.print(host)
    for host in pending:
        await inv.print(f"{host} (waiting for an admin's approval: domains:verify {inv.args.app} {host})")


def _domain_of(session: Session, app_name: str, host: str) -> Domain:
    """The app's domain `host`; CommandError if it has no such domain."""
    app = access.find_app(session, app_name)
    domain = session.scalar(select(Domain).where(Domain.hostname == host, Domain.app_id == app.id))
    if domain is None:
        raise CommandError(f"{host} is not a domain of {app_name}; run: domains {app_name}")
    return domain


@command("domains:add", "Route a custom host name to an app.", APP, arg("host", metavar="HOST", help="the host name"),
         access=APP_TEAM, example="domains:add myapp www.example.com", mutating=True)
async def domains_add(inv: Invocation[Platform]) -> None:
    host = names.hostname(inv.args.host)
    base = inv.services.settings.domain
    if host == base or host.endswith("." + base):
        raise CommandError(f"{host} is under Teresa's own domain {base}; every app already has APP.{base}.")
    app = await _check_app(inv)

    # With TERESA_REQUIRE_DOMAIN_VERIFICATION a domain routes once an admin approved it (one added by an
    # admin is approved): nobody can take traffic for a name they do not own by naming it first.
    approved = inv.actor.is_admin or not inv.services.settings.require_domain_verification

    def save(session: Session) -> None:
        app_id = access.find_app(session, app).id
        existing = session.scalar(select(Domain).where(Domain.hostname == host))
        if existing is not None:
            owner = "this app" if existing.app_id == app_id else "another app"
            raise CommandError(f"{host} is already routed to {owner}.")
        session.add(Domain(app_id=app_id, hostname=host, verified=approved))

    try:
        await inv.services.controller.change_domains(app, inv.actor, save)
    except IntegrityError:
        raise CommandError(f"{host} is already routed to another app.") from None
    if not approved:
        await inv.print(f"{host} was added to {app} and routes once an admin approves it with: "
                        f"domains:verify {app} {host}")
        return
    await inv.print(f"{host} now routes to {app}; point its DNS at Teresa's router.")


@command("domains:verify", "Approve a custom domain, so that it routes (with TERESA_REQUIRE_DOMAIN_VERIFICATION).",
         APP, arg("host", metavar="HOST", help="the host name"), access=ADMIN, mutating=True,
         example="domains:verify myapp www.example.com")
async def domains_verify(inv: Invocation[Platform]) -> None:
    access.require_admin(inv.actor, "approve domains")
    host = names.hostname(inv.args.host)
    app = await _check_app(inv)

    def approve(session: Session) -> None:
        _domain_of(session, app, host).verified = True

    await inv.services.controller.change_domains(app, inv.actor, approve)
    await inv.print(f"{host} approved; it now routes to {app}.")


@command("domains:remove", "Stop routing a custom host name to an app.", APP,
         arg("host", metavar="HOST", help="the host name"), access=APP_TEAM,
         example="domains:remove myapp www.example.com", mutating=True)
async def domains_remove(inv: Invocation[Platform]) -> None:
    host = names.hostname(inv.args.host)
    app = await _check_app(inv)
    await inv.services.controller.change_domains(app, inv.actor, lambda s: s.delete(_domain_of(s, app, host)))
    await inv.print(f"{host} removed from {app}.")


SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@command("domains:tls", "Serve an app's hosts over TLS with a certificate Secret in its namespace (Kubernetes).", APP,
         arg("--secret", metavar="NAME", help="a kubernetes.io/tls Secret in the app's namespace"),
         arg("--off", action="store_true", help="stop using the app's own Secret"), access=APP_TEAM,
         example="domains:tls myapp --secret myapp-example-com", mutating=True)
async def domains_tls(inv: Invocation[Platform]) -> None:
    secret, off = inv.args.secret, inv.args.off
    if bool(secret) == bool(off):
        raise CommandError("domains:tls needs either --secret NAME (a TLS Secret in the app's namespace) or --off.")
    if secret and not SECRET_NAME.match(secret):
        raise CommandError(f"{secret[:64]!r} is not a Secret name; use lowercase letters, digits, '-' and '.'.")

    app = await _check_app(inv)

    def save(session: Session) -> None:
        access.find_app(session, app).tls_secret = "" if off else secret

    await inv.services.controller.change_domains(app, inv.actor, save)
    if off:
        issuer = inv.services.settings.kubernetes.cluster_issuer
        how = f"a certificate from the cluster issuer {issuer}" if issuer else "no TLS from Teresa"
        await inv.print(f"{app} no longer uses its own TLS Secret; its hosts get {how}.")
    else:
        await inv.print(f"{app}'s hosts are served over TLS with the Secret {secret}.")
