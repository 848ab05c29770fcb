"""The web dashboard: server-rendered pages over the same database, controller and audit log as the commands.

Modules: `sessions` (one-time links, cookies, CSRF tokens), `commands`
(`dashboard:login`), `html` (escaping and layout), `views` (what a page shows,
read from the database and runtime), `pages` (the HTML and JSON handlers),
`live` (server-sent events: build lines, process status), `actions` (rollback
and restart), `app` (routes, authentication, security headers, the listener).
"""
