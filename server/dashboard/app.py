"""The dashboard's aiohttp application: routes, the login check, security headers, and its listener."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from controller.platform import Platform
from core import health
from core import log as logging
from keys.ratelimit import LoginLimiter, login_limiter
from server.dashboard import actions, live, login, pages
from server.dashboard.auth import LOGIN_KEY, SERVICES_KEY, load_login
from server.dashboard.html import CSS, JS

log = logging.get(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/login/", "/static/")  # and /login itself: everything else needs a session
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but the login ones needs a live session."""
    if request.path != "/login" and not request.path.startswith(PUBLIC):
        found = await load_login(request)
        if found is None:
            if request.path.startswith("/api/") or request.path.endswith("/live") or request.method != "GET":
                raise web.HTTPUnauthorized(text="Log in first: ssh teresa dashboard:login")
            raise web.HTTPSeeOther("/login")
        request[LOGIN_KEY] = found
    return await handler(request)


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """Every response gets the security headers as it starts, streamed ones and errors too."""
    response.headers.update(HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")


def _static(text: str, content_type: str) -> Handler:
    async def serve(_request: web.Request) -> web.Response:
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "max-age=300"})
    return serve


def dashboard_app(platform: Platform, limiter: LoginLimiter | None = None) -> web.Application:
    """The dashboard; `limiter` is the login budget it shares with the SSH door (its own when None)."""
    app = web.Application(middlewares=[security], client_max_size=64 * 1024)
    app[SERVICES_KEY] = platform
    app[login.LIMITER_KEY] = limiter or login_limiter(platform.settings)
    app[live.STREAMS_KEY] = set()
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(live.close_streams)
    app.add_routes([
        web.get("/static/dashboard.css", _static(CSS, "text/css")),
        web.get("/static/dashboard.js", _static(JS, "application/javascript")),
        web.get("/login", login.login_form),
        web.post("/login", login.login_password),
        web.get("/login/{token}", login.login_link),
        web.post("/login/{token}", login.confirm_link),
        web.post("/logout", login.logout),
        web.get("/", pages.index),
        web.get("/api/apps", pages.api_apps),
        web.get("/api/apps/{app}", pages.api_app),
        web.get("/apps/{app}", pages.app_page),
        web.get("/apps/{app}/builds/{number:[0-9]{1,9}}", pages.build_page),
        web.get("/apps/{app}/builds/{number:[0-9]{1,9}}/live", live.build_lines),
        web.get("/apps/{app}/ps/live", live.processes),
        web.get("/apps/{app}/rollback", actions.confirm_rollback),
        web.post("/apps/{app}/rollback", actions.rollback),
        web.get("/apps/{app}/restart", actions.confirm_restart),
        web.post("/apps/{app}/restart", actions.restart),
    ])
    return app


async def start_dashboard(platform: Platform, limiter: LoginLimiter | None = None) -> web.AppRunner:
    """Serve the dashboard on TERESA_DASHBOARD_ADDR; stop it with `await runner.cleanup()`."""
    runner = await health.start_health_server(dashboard_app(platform, limiter), platform.settings.dashboard_addr)
    host = platform.settings.dashboard_addr[0]
    log.info("dashboard_listening", address=f"{host}:{health.bound_port(runner)}", url=platform.settings.dashboard_url)
    return runner


