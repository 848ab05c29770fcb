"""The benchmark's sample app: says which version and port answered, and when it is ready."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT = int(os.environ["PORT"])
VERSION = Path(__file__).with_name("VERSION").read_text().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real app server would
    # Headers and body are two writes: with Nagle's algorithm on, the body waits for the
    # peer's delayed ACK of the headers (40 ms on Linux). Real app servers set TCP_NODELAY too.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b"ok\n" if self.path == "/healthz" else f"version {VERSION} on port {PORT}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Port", str(PORT))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would swamp the logs under load


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
