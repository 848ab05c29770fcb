"""HTML for the dashboard: escaping, the page layout, the stylesheet and the small script.

Every value reaches the page through `e()` (or `attr()`): there is no template
engine to forget it, so the rule is simple to review — no f-string in this
package interpolates a value without one of them.
"""

from __future__ import annotations

import html
from typing import Iterable, Sequence

MASK = "********"


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def attr(value: object) -> str:
    return f'"{e(value)}"'


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *, tbody_attrs: str = "") -> str:
    """A table; `rows` hold HTML already escaped by the caller (cells built with e())."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody{tbody_attrs}>{body}</tbody></table></div>")


def link(href: str, text: object) -> str:
    return f"<a href={attr(href)}>{e(text)}</a>"


def status(value: str) -> str:
    return f'<span class="status status-{e(value)}">{e(value)}</span>'


def page(title: str, body: str, *, user: str | None = None, csrf: str = "") -> str:
    before, after = page_around(title, user=user, csrf=csrf)
    return before + body + after


def page_around(title: str, *, user: str | None = None, csrf: str = "") -> tuple[str, str]:
    """A page's HTML before its body and after it (a page streamed in pieces writes its body between)."""
    nav = ""
    if user is not None:
        nav = (f'<nav aria-label="main"><a href="/">Apps</a><span class="who">{e(user)}</span>'
               f'<form method="post" action="/logout"><input type="hidden" name="csrf" value={attr(csrf)}>'
               '<button type="submit">Log out</button></form></nav>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)} · Teresa</title><link rel=\"stylesheet\" href=\"/static/dashboard.css\">"
            f'<script src="/static/dashboard.js" defer></script></head>'
            f'<body><a class="skip" href="#main">Skip to content</a><header><a class="brand" href="/">Teresa</a>'
            f'{nav}</header><main id="main"><h1>{e(title)}</h1>', "</main></body></html>")


def form(action: str, csrf: str, fields: dict[str, str], button: str, *, danger: bool = False) -> str:
    hidden = "".join(f'<input type="hidden" name={attr(k)} value={attr(v)}>' for k, v in fields.items())
    return (f'<form method="post" action={attr(action)}><input type="hidden" name="csrf" value={attr(csrf)}>'
            f'{hidden}<button type="submit"{" class=danger" if danger else ""}>{e(button)}</button></form>')


CSS = """
:root { --fg: #1d2330; --muted: #5b6474; --line: #d9dde5; --accent: #2455c3; --bad: #b3261e; --ok: #1b7a3a; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: #f7f8fa; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .75rem 1rem;
         background: #fff; border-bottom: 1px solid var(--line); }
header nav { display: flex; gap: 1rem; align-items: center; margin-left: auto; }
header form { margin: 0; }
.brand { font-weight: 700; text-decoration: none; color: var(--fg); }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
a { color: var(--accent); }
a:focus, button:focus, select:focus, input:focus { outline: 3px solid #f0b400; outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .5rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: .5rem 0 1.5rem; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
pre.log { background: #111; color: #e8e8e8; padding: 1rem; overflow-x: auto; white-space: pre-wrap;
          max-height: 70vh; overflow-y: auto; }
pre.stored:empty::before { content: "(no output was stored)"; color: #b8b8b8; }
.status { font-weight: 600; } .status-succeeded, .status-up { color: var(--ok); }
.status-failed, .status-crashed, .status-denied, .status-timed-out { color: var(--bad); }
button { font: inherit; padding: .35rem .8rem; border: 1px solid var(--line); border-radius: 4px; background: #fff;
         cursor: pointer; } button.danger { border-color: var(--bad); color: var(--bad); }
form.inline { display: inline; }
.notice { padding: .75rem 1rem; background: #fff; border-left: 4px solid var(--accent); }
.error { border-left-color: var(--bad); }
label { display: block; margin: .5rem 0 .2rem; } input[type=email], input[type=password] { width: 100%;
        max-width: 24rem; padding: .4rem; font: inherit; }
@media (max-width: 40rem) { th, td { padding: .3rem; font-size: .9rem; } main { padding: .5rem; } }
"""

# Live parts: a build log (data-live-log) and the process table (data-live-ps) follow server-sent events.
JS = """
"use strict";
document.querySelectorAll("[data-live-log]").forEach(function (pre) {
  var source = new EventSource(pre.getAttribute("data-live-log"));
  source.onmessage = function (event) {
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(event.data + "\\n"));
    if (atEnd) { pre.scrollTop = pre.scrollHeight; }
  };
  source.addEventListener("end", function () { source.close(); window.location.reload(); });
});
document.querySelectorAll("[data-live-ps]").forEach(function (tbody) {
  var source = new EventSource(tbody.getAttribute("data-live-ps"));
  source.addEventListener("ps", function (event) {
    var rows = JSON.parse(event.data);
    tbody.textContent = "";
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      [row.replica, row.state, String(row.restarts), "v" + row.release].forEach(function (value) {
        var td = document.createElement("td"); td.textContent = value; tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  });
});
"""
