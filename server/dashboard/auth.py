"""Who is asking: the session cookie, the actor it stands for, the cookie's flags, and the CSRF check."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from core.commands import Actor
from core.services import Services
from server.dashboard import sessions

COOKIE = "teresa_session"
LOGIN_KEY = web.RequestKey("teresa_login", sessions.Login)
SERVICES_KEY = web.AppKey("teresa_services", Services)


def actor(request: web.Request) -> Actor:
    """The logged-in user as an Actor: the same authorization as their SSH commands."""
    return actor_of(request, request[LOGIN_KEY])


def actor_of(request: web.Request, login: sessions.Login) -> Actor:
    return Actor(email=login.email, user_id=login.user_id, is_admin=login.is_admin,
                 address=request.remote or "", via=f"dashboard ({login.credential})")


def secure(request: web.Request) -> bool:
    """Cookies are Secure when the dashboard is served over TLS, here or at the proxy in front of it."""
    return request.secure or request.app[SERVICES_KEY].settings.dashboard_url.startswith("https://")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, *,
               lifetime: dt.timedelta, path: str = "/") -> None:
    response.set_cookie(name, value, max_age=int(lifetime.total_seconds()), path=path, httponly=True,
                        secure=secure(request), samesite="Strict")


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    set_cookie(request, response, COOKIE, token, lifetime=sessions.SESSION_LIFETIME)


async def load_login(request: web.Request) -> sessions.Login | None:
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    db = request.app[SERVICES_KEY].db
    return await db.run(lambda s: sessions.lookup(s, token))


def same_site(request: web.Request) -> bool:
    """The request came from the dashboard's own pages (or was typed in), as the browser says."""
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


async def checked_form(request: web.Request, expected_csrf: str) -> dict[str, str]:
    """The posted form, if it carries `expected_csrf` and came from this site; else 403."""
    posted = await request.post()
    fields = {k: v for k, v in posted.items() if isinstance(v, str)}
    if not same_site(request) or not sessions.csrf_ok(expected_csrf, fields.get("csrf", "")):
        raise web.HTTPForbidden(text="This form is stale or did not come from the dashboard; reload the page.")
    return fields


async def require_csrf(request: web.Request) -> dict[str, str]:
    """The posted form, if its CSRF token is this session's and it came from this site; else 403."""
    return await checked_form(request, request[LOGIN_KEY].csrf)
