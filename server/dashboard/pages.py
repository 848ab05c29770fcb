"""The dashboard's pages (HTML) and their JSON twins. Every app is looked up through the actor's permissions:
an app the user may not see is a 404, the same as one that does not exist."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator, TypeVar

from aiohttp import web
from sqlalchemy.orm import Session

from controller.buildlog import LiveBuild
from controller.platform import Platform
from core import audit
from core.commands import CommandError
from core.models import Build
from server.dashboard import views
from server.dashboard.auth import LOGIN_KEY, SERVICES_KEY, actor
from server.dashboard.html import MASK, e, link, page, page_around, status, table

T = TypeVar("T")


def platform(request: web.Request) -> Platform:
    services = request.app[SERVICES_KEY]
    assert isinstance(services, Platform)
    return services


async def visible(request: web.Request, work: Callable[[Session], T]) -> T:
    """Run `work`; an app this user may not see (or that does not exist) becomes 404."""
    try:
        return await platform(request).db.run(work)
    except CommandError:
        raise web.HTTPNotFound(text="No such app.") from None


def html(request: web.Request, title: str, body: str, status_code: int = 200) -> web.Response:
    login = request[LOGIN_KEY]
    return web.Response(text=page(title, body, user=login.email, csrf=login.csrf), content_type="text/html",
                        status=status_code)


async def streamed_html(request: web.Request, title: str, head: str, pieces: Iterator[str], tail: str,
                        ) -> web.StreamResponse:
    """A page written as it is read: `head`, then each piece of blocking `pieces` (escaped; taken in a worker
    thread), then `tail`."""
    login = request[LOGIN_KEY]
    before, after = page_around(title, user=login.email, csrf=login.csrf)
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    await response.prepare(request)
    await response.write((before + head).encode())
    while (piece := await asyncio.to_thread(next, pieces, None)) is not None:  # abandoned: closed when collected
        await response.write(e(piece).encode())
    await response.write((tail + after).encode())
    await response.write_eof()
    return response


def _when(value: Any) -> str:
    return e(value.replace(microsecond=0).isoformat(sep=" ") + " UTC") if value else ""


def _build_cell(app: str, build: Any) -> str:
    if build is None:
        return "none"
    return f"{link(f'/apps/{app}/builds/{build.number}', f'#{build.number}')} {status(build.status)} " \
           f"<code>{e(build.commit[:7])}</code>"


async def index(request: web.Request) -> web.Response:
    who = actor(request)
    apps = await platform(request).db.run(lambda s: views.app_summaries(s, who))
    states = await asyncio.gather(*(views.processes_of(platform(request), a.name) for a in apps))
    rows = [[link(f"/apps/{a.name}", a.name), e(a.team), e(views.process_summary(ps) if ps is not None else "unknown"),
             e(f"v{a.release}" if a.release else "none"), _build_cell(a.name, a.last_build),
             e(", ".join(a.domains) or "—")] for a, ps in zip(apps, states)]
    body = table("Apps you may see", ["App", "Team", "Processes", "Release", "Last build", "Domains"], rows) \
        if rows else '<p class="notice">No apps yet; create one with <code>ssh teresa apps:create NAME</code>.</p>'
    return html(request, "Apps", body)


def _diff_section(diff: views.ReleaseDiff | None) -> str:
    if diff is None:
        return ""
    items = [f"<li>{e(label)}: {e(', '.join(names))}</li>" for label, names in
             (("config added", diff.added), ("config removed", diff.removed), ("config changed", diff.changed),
              ("process types changed", diff.processes)) if names]
    if diff.build:
        items.append(f"<li>build: <code>{e(diff.build[0][:8])}</code> → <code>{e(diff.build[1][:8])}</code></li>")
    return (f'<section aria-labelledby="diff"><h2 id="diff">v{diff.older} → v{diff.newer}</h2>'
            f"<ul>{''.join(items) or '<li>no differences in config names, build or process types</li>'}</ul>"
            "</section>")


def _diff_form(app: str, versions: list[int]) -> str:
    options = "".join(f'<option value="{v}">v{v}</option>' for v in versions)
    return (f'<form method="get" action="/apps/{e(app)}"><label for="from">Compare release</label>'
            f'<select id="from" name="from">{options}</select> <label for="to">with</label>'
            f'<select id="to" name="to">{options}</select> <button type="submit">Show differences</button></form>')


def _int_query(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").removeprefix("v")
    return int(value) if value.isdigit() and len(value) < 10 else None


async def app_page(request: web.Request) -> web.Response:
    name, who = request.match_info["app"], actor(request)
    detail = await visible(request, lambda s: views.app_detail(s, who, name))
    older, newer = _int_query(request, "from"), _int_query(request, "to")
    diff = None
    if older is not None and newer is not None:
        diff = await visible(request, lambda s: views.release_diff(s, who, name, min(older, newer), max(older, newer)))
    processes = await views.processes_of(platform(request), name)
    s = detail.summary
    ps_rows = [[e(p["replica"]), status(p["state"]), e(p["restarts"]), e(f"v{p['release']}")]
               for p in views.process_rows(processes or [])]
    release_rows = [[e(f"v{r.version}") + (" (running)" if r.version == s.release else ""), status(r.status),
                     e(r.reason), e(r.user), _when(r.created_at), f"<code>{e(r.build_id[:8])}</code>",
                     link(f"/apps/{name}/rollback?version={r.version}", f"Roll back to v{r.version}")
                     if r.status == "succeeded" and s.release is not None and r.version != s.release else ""]
                    for r in detail.releases]
    build_rows = [[link(f"/apps/{name}/builds/{b.number}", f"#{b.number}"), status(b.status), e(b.reason),
                   f"<code>{e(b.commit[:7])}</code>", e(b.ref.removeprefix("refs/heads/")), e(b.user),
                   _when(b.started_at)] for b in detail.builds]
    body = "".join([
        f"<p>Team {e(s.team)} · release {e(f'v{s.release}' if s.release else 'none')} · domains "
        f"{e(', '.join(s.domains) or 'none')}</p>",
        table("Processes (live)", ["Process", "State", "Restarts", "Release"], ps_rows,
              tbody_attrs=f' data-live-ps="/apps/{e(name)}/ps/live" aria-live="polite"'),
        f'<p><a href="/apps/{e(name)}/restart">Restart…</a></p>' if s.release else "",
        table("Config (values masked)", ["Name", "Value"], [[e(n), MASK] for n in detail.config_names]),
        _diff_section(diff),
        table("Releases", ["Release", "Status", "Reason", "By", "When", "Build", ""], release_rows),
        _diff_form(name, [r.version for r in detail.releases]) if len(detail.releases) > 1 else "",
        table("Builds", ["Build", "Status", "Reason", "Commit", "Branch", "By", "Started"], build_rows),
        activity_table(detail.activity),
    ])
    return html(request, name, body)


def activity_table(records: list[Any]) -> str:
    rows = [[_when(r.at), e(r.actor), e(r.action), e(" ".join(f"{k}={v}" for k, v in sorted(r.details.items()))),
             e(r.address), e(r.credential), status(r.outcome) + (f" {e(r.reason)}" if r.reason else "")]
            for r in records]
    return table("Activity", ["When", "Who", "What", "Details", "From", "Via", "Outcome"], rows)


async def requested_build(request: web.Request) -> tuple[Build, LiveBuild | None]:
    """The build the path names (404 if this user may not see it), and its live lines if it is running."""
    name, who = request.match_info["app"], actor(request)
    number = int(request.match_info["number"])
    build = await visible(request, lambda s: views.build_of(s, who, name, number))
    if build is None:
        raise web.HTTPNotFound(text="No such build.")
    return build, platform(request).controller.live_builds.get(build.id)


async def build_page(request: web.Request) -> web.StreamResponse:
    name, number = request.match_info["app"], int(request.match_info["number"])
    build, live = await requested_build(request)
    head = (f"<p>{status(build.status)} {e(build.reason)} · commit <code>{e(build.commit)}</code> · "
            f"{e(build.ref)} · by {e(build.user)} · {_when(build.started_at)}</p>")
    title = f"{name} build #{number}"
    if live is not None:
        log = f'<pre class="log" data-live-log="/apps/{e(name)}/builds/{number}/live" aria-live="polite"></pre>'
        return html(request, title, head + log)
    pieces = views.stored_log(platform(request).storage, name, build.id)
    return await streamed_html(request, title, head + '<pre class="log stored">', pieces, "</pre>")


# --- JSON ---------------------------------------------------------------------------------------


def _summary_json(a: views.AppSummary) -> dict[str, Any]:
    build = a.last_build
    return {"name": a.name, "team": a.team, "release": a.release, "domains": a.domains,
            "last_build": {"number": build.number, "status": build.status, "commit": build.commit} if build else None}


async def api_apps(request: web.Request) -> web.Response:
    who = actor(request)
    apps = await platform(request).db.run(lambda s: views.app_summaries(s, who))
    return web.json_response([_summary_json(a) for a in apps])


async def api_app(request: web.Request) -> web.Response:
    name, who = request.match_info["app"], actor(request)
    detail = await visible(request, lambda s: views.app_detail(s, who, name))
    processes = await views.processes_of(platform(request), name)
    return web.json_response(_summary_json(detail.summary) | {
        "config": {n: MASK for n in detail.config_names},
        "processes": views.process_rows(processes) if processes is not None else None,
        "releases": [{"version": r.version, "status": r.status, "reason": r.reason, "user": r.user,
                      "build": r.build_id} for r in detail.releases],
        "activity": [audit.as_dict(r) for r in detail.activity],
    })
