"""A tiny web app for Teresa's walk-through: stdlib only, configured by environment."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200
        if self.path == "/healthz":
            body = b"ok\n"
        elif self.path == "/":
            greeting = os.environ.get("GREETING", "Hello")
            body = f"{greeting} from {os.environ.get('DYNO', 'web')} of Teresa's python-hello!\n".encode()
        else:
            status, body = 404, b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"listening on port {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
