"""Logging in and out: the one-time link from `dashboard:login` (confirmed with a POST), or a password for
users who have one.

Logins are recorded in the audit log as `dashboard:session`: successes, and wrong passwords (within the
login budget, keys.ratelimit). A link that is unknown, used or expired writes nothing.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from core import audit
from keys.auth import password_login
from keys.ratelimit import LoginLimiter
from server.dashboard import sessions
from server.dashboard.auth import (COOKIE, SERVICES_KEY, checked_form, require_csrf, same_site, set_cookie,
                                   set_session_cookie)
from server.dashboard.html import e, form, page

LIMITER_KEY = web.AppKey("teresa_login_limiter", LoginLimiter)
LINK_COOKIE, LINK_PATH = "teresa_link", "/login/"  # ties a link's confirmation to the browser that opened it
EXPIRED = "This login link has expired or was already used; run dashboard:login again."


def _login_page(message: str = "", status: int = 200) -> web.Response:
    notice = f'<p class="notice error" role="alert">{e(message)}</p>' if message else ""
    body = (f"{notice}<p>Run <code>ssh teresa dashboard:login</code> and open the link it prints, "
            "or log in with your password:</p>"
            '<form method="post" action="/login"><label for="email">Email</label>'
            '<input id="email" type="email" name="email" autocomplete="username" required>'
            '<label for="password">Password</label>'
            '<input id="password" type="password" name="password" autocomplete="current-password" required>'
            '<p><button type="submit">Log in</button></p></form>')
    return web.Response(text=page("Log in", body), content_type="text/html", status=status)


async def _record(request: web.Request, email: str, method: str, ok: bool, reason: str = "") -> None:
    who = audit.Who(email[:254] or "?", request.remote or "", method)
    await audit.record(request.app[SERVICES_KEY].db, audit.Entry(
        who, "dashboard:session", details={"method": method}, outcome=audit.SUCCEEDED if ok else audit.FAILED,
        reason=reason))


def _logged_in(request: web.Request, token: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": "/"})
    set_session_cookie(request, response, token)
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page()


async def login_link(request: web.Request) -> web.Response:
    """A link's page: whose login it is, and a button (a POST, with a token tied to this browser) that makes
    the session, so a link someone else sent cannot log a visitor into their account unawares."""
    token = request.match_info["token"]
    email = await request.app[SERVICES_KEY].db.run(lambda s: sessions.link_owner(s, token))
    if email is None:  # anyone may ask for any path: nothing is recorded
        return _login_page(EXPIRED, 403)
    csrf = secrets.token_urlsafe(32)
    body = (f"<p>Log in to the dashboard as <strong>{e(email)}</strong>?</p>"
            "<p>Go on only if you ran <code>dashboard:login</code> yourself just now: "
            "a link someone else made logs you in as them.</p>"
            + form(f"/login/{token}", csrf, {}, f"Log in as {email}"))
    response = web.Response(text=page("Log in", body), content_type="text/html")
    set_cookie(request, response, LINK_COOKIE, csrf, lifetime=sessions.LINK_LIFETIME, path=LINK_PATH)
    return response


async def confirm_link(request: web.Request) -> web.Response:
    await checked_form(request, request.cookies.get(LINK_COOKIE, ""))
    token = request.match_info["token"]
    redeemed = await request.app[SERVICES_KEY].db.run(lambda s: sessions.redeem_link(s, token))
    if redeemed is None:
        return _login_page(EXPIRED, 403)
    session_token, user = redeemed
    await _record(request, user.email, "link", ok=True)
    response = _logged_in(request, session_token)
    response.del_cookie(LINK_COOKIE, path=LINK_PATH)
    return response


async def login_password(request: web.Request) -> web.Response:
    if not same_site(request):
        raise web.HTTPForbidden(text="Log in from the dashboard's own page.")
    form_data = await request.post()
    email, password = str(form_data.get("email", "")).strip().lower(), str(form_data.get("password", ""))
    if not email or not password:
        return _login_page("Give both your email and your password.", 400)
    db = request.app[SERVICES_KEY].db
    login = await password_login(db, request.app[LIMITER_KEY], door="dashboard", address=request.remote or "?",
                                 email=email, password=password)
    if login.refused:
        return _login_page(login.refused, 429)
    if login.actor is None or login.actor.user_id is None:
        await _record(request, email, "password", ok=False, reason="wrong password or no such user")
        return _login_page("Wrong email or password.", 401)
    user_id, credential = login.actor.user_id, sessions.password_credential(login.stamp)
    token = await db.run(lambda s: sessions.new_session(s, user_id, credential))
    await _record(request, login.actor.email, "password", ok=True)
    return _logged_in(request, token)


async def logout(request: web.Request) -> web.Response:
    await require_csrf(request)
    token = request.cookies.get(COOKIE, "")
    await request.app[SERVICES_KEY].db.run(lambda s: sessions.end(s, token))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


