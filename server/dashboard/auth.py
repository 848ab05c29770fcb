"""Who is asking: the session cookie, the actor it stands for, the cookie's flags, and the CSRF check."""

from __future__ import annotations

from aiohttp import web

from core.commands import Actor
from core.services import Services
from server.dashboard import sessions

COOKIE = "teresa_session"
LOGIN_KEY = web.RequestKey("teresa_login", sessions.Login)
SERVICES_KEY = web.AppKey("teresa_services", Services)


def actor(request: web.Request) -> Actor:
    """The logged-in user as an Actor: the same authorization as their SSH commands."""
    login = request[LOGIN_KEY]
    return Actor(email=login.email, user_id=login.user_id, is_admin=login.is_admin,
                 address=request.remote or "", via=f"dashboard ({login.credential})")


def secure(request: web.Request) -> bool:
    """Cookies are Secure when the dashboard is served over TLS, here or at the proxy in front of it."""
    return request.secure or request.app[SERVICES_KEY].settings.dashboard_url.startswith("https://")


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=int(sessions.SESSION_LIFETIME.total_seconds()), path="/",
                        httponly=True, secure=secure(request), samesite="Strict")


async def load_login(request: web.Request) -> sessions.Login | None:
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    db = request.app[SERVICES_KEY].db
    return await db.run(lambda s: sessions.lookup(s, token))


async def require_csrf(request: web.Request) -> dict[str, str]:
    """The posted form, if its CSRF token is this session's and it came from this site; else 403."""
    posted = await request.post()
    fields = {k: v for k, v in posted.items() if isinstance(v, str)}
    same_site = request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    if not same_site or not sessions.csrf_ok(request[LOGIN_KEY], fields.get("csrf", "")):
        raise web.HTTPForbidden(text="This form is stale or did not come from the dashboard; reload the page.")
    return fields
