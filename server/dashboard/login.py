"""Logging in and out: the one-time link from `dashboard:login`, or a password for users who have one.

Both are recorded in the audit log as `dashboard:session`, successes and failures.
"""

from __future__ import annotations

from aiohttp import web

from core import audit
from keys.auth import password_login
from keys.ratelimit import LoginLimiter
from server.dashboard import sessions
from server.dashboard.auth import COOKIE, SERVICES_KEY, require_csrf, set_session_cookie
from server.dashboard.html import e, page

LIMITER_KEY = web.AppKey("teresa_login_limiter", LoginLimiter)


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


async def _record(request: web.Request, email: str, credential: str, method: str, ok: bool, reason: str = "") -> None:
    who = audit.Who(email[:254] or "?", request.remote or "", credential)
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
    token = request.match_info["token"]
    db = request.app[SERVICES_KEY].db
    redeemed = await db.run(lambda s: sessions.redeem_link(s, token))
    if redeemed is None:
        await _record(request, "", "link", "link", ok=False, reason="unknown, used or expired link")
        return _login_page("This login link has expired or was already used; run dashboard:login again.", 403)
    session_token, user = redeemed
    await _record(request, user.email, "link", "link", ok=True)
    return _logged_in(request, session_token)


async def login_password(request: web.Request) -> web.Response:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise web.HTTPForbidden(text="Log in from the dashboard's own page.")
    form = await request.post()
    email, password = str(form.get("email", "")).strip().lower(), str(form.get("password", ""))
    if not email or not password:
        return _login_page("Give both your email and your password.", 400)
    db = request.app[SERVICES_KEY].db
    login = await password_login(db, request.app[LIMITER_KEY], door="dashboard", address=request.remote or "?",
                                 email=email, password=password)
    if login.refused:
        return _login_page(login.refused, 429)
    if login.actor is None or login.actor.user_id is None:
        await _record(request, email, "password", "password", ok=False, reason="wrong password or no such user")
        return _login_page("Wrong email or password.", 401)
    user_id = login.actor.user_id
    token = await db.run(lambda s: sessions.new_session(s, user_id, "password"))
    await _record(request, login.actor.email, "password", "password", ok=True)
    return _logged_in(request, token)


async def logout(request: web.Request) -> web.Response:
    await require_csrf(request)
    token = request.cookies.get(COOKIE, "")
    await request.app[SERVICES_KEY].db.run(lambda s: sessions.end(s, token))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


