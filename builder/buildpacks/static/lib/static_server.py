"""Teresa's static web server: serves the app directory on $PORT.

Hidden files and the Procfile are never served, and directories are never listed: a directory
without an index.html is a 404.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class StaticHandler(SimpleHTTPRequestHandler):
    def send_head(self):  # type: ignore[override]
        parts = unquote(urlsplit(self.path).path).split("/")
        if any(part.startswith(".") for part in parts if part) or parts[1:2] == ["Procfile"]:
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):  # type: ignore[override]
        self.send_error(404, "File not found")
        return None

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


def main() -> None:
    root = Path(os.environ.get("STATIC_ROOT") or os.getcwd())
    port = int(os.environ.get("PORT") or 5000)
    server = ThreadingHTTPServer(("", port), partial(StaticHandler, directory=str(root)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"Serving {root} on port {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
