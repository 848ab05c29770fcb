"""The dashboard's two actions, rollback and restart: a confirmation page (GET), then the form's POST.

The POST needs the session's CSRF token, goes through the controller exactly
as `releases:rollback` and `ps:restart` do, and is recorded in the audit log
under the same action names.
"""

from __future__ import annotations

from aiohttp import web

from typing import Awaitable, Callable

from controller.platform import Platform
from controller.runtime.base import LineSink
from core import audit
from core.commands import Actor, PermissionDenied
from core.errors import UserError
from server.dashboard import views
from server.dashboard.auth import LOGIN_KEY, actor, require_csrf
from server.dashboard.html import e, form
from server.dashboard.pages import html, platform, visible


async def confirm_rollback(request: web.Request) -> web.Response:
    name, who = request.match_info["app"], actor(request)
    await visible(request, lambda s: views.visible_app(s, who, name))
    version = request.query.get("version", "")
    if not version.isdigit() or len(version) > 9:
        raise web.HTTPBadRequest(text="Give the release to roll back to, like ?version=3.")
    body = (f"<p>Roll {e(name)} back to v{e(version)}? This makes a new release with v{e(version)}'s build and "
            "config, and rolls it out.</p>"
            + form(f"/apps/{name}/rollback", request[LOGIN_KEY].csrf, {"version": version},
                   f"Roll back to v{version}", danger=True)
            + f'<p><a href="/apps/{e(name)}">Cancel</a></p>')
    return html(request, f"Roll back {name}", body)


async def confirm_restart(request: web.Request) -> web.Response:
    name, who = request.match_info["app"], actor(request)
    await visible(request, lambda s: views.visible_app(s, who, name))
    body = (f"<p>Restart every process of {e(name)}? They are replaced one by one, as in a deploy.</p>"
            + form(f"/apps/{name}/restart", request[LOGIN_KEY].csrf, {}, "Restart", danger=True)
            + f'<p><a href="/apps/{e(name)}">Cancel</a></p>')
    return html(request, f"Restart {name}", body)


class _Lines:
    """What the controller prints while it works; the dashboard shows the last line if it fails."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


Work = Callable[[Platform, str, Actor, LineSink], Awaitable[int]]


async def _act(request: web.Request, action: str, details: dict[str, object], work: Work) -> web.Response:
    name, who = request.match_info["app"], actor(request)
    await visible(request, lambda s: views.visible_app(s, who, name))
    services = platform(request)
    out = _Lines()
    entry = audit.Entry(who.who, action, app=name, details=details)
    try:
        async with audit.recording(services.db, entry):
            try:
                await work(services, name, who, out)
            except PermissionDenied:
                entry.outcome = audit.DENIED
                raise
    except UserError as exc:
        return html(request, f"{name}: not done", f'<p class="notice error">{e(exc)}</p>'
                    f'<p><a href="/apps/{e(name)}">Back to {e(name)}</a></p>', status_code=409)
    raise web.HTTPSeeOther(f"/apps/{name}")


async def rollback(request: web.Request) -> web.Response:
    fields = await require_csrf(request)
    version = fields.get("version", "")
    if not version.isdigit() or len(version) > 9:
        raise web.HTTPBadRequest(text="Give the release to roll back to.")
    target = int(version)
    return await _act(request, "releases:rollback", {"version": f"v{target}"},
                      lambda p, app, who, out: p.controller.rollback(app, target, who, out))


async def restart(request: web.Request) -> web.Response:
    await require_csrf(request)
    return await _act(request, "ps:restart", {"type": None},
                      lambda p, app, who, out: p.controller.restart(app, None, who, out))


