"""A tiny web app for the local runtime's tests (stdlib only)."""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def flag(name: str) -> bool:
    path = os.environ.get(name)
    return bool(path) and os.path.exists(path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            self.reply(int(os.environ.get("ROOT_STATUS", "200")), f"{os.environ.get('MESSAGE', 'hello')} from {os.environ.get('DYNO')}\n")
        elif url.path == "/headers":
            self.reply(200, json.dumps(dict(self.headers.items())))
        elif url.path == "/ready":
            self.reply(503 if flag("NOT_READY_FILE") else 200, "ready?\n")
        elif url.path == "/alive":
            self.reply(500 if flag("SICK_FILE") else 200, "alive?\n")
        elif url.path == "/never":
            self.reply(500, "never ready\n")
        elif url.path == "/crash":
            os._exit(3)
        elif url.path == "/peer":  # the router's side of the connection: the same port means a reused one
            self.reply(200, str(self.client_address[1]))
        elif url.path == "/chunked":  # a streamed response of unknown length
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first ", b"second ", b"third\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/env":
            self.reply(200, os.environ.get(parse_qs(url.query)["name"][0], ""))
        else:
            self.reply(404, "not found\n")

    def do_POST(self) -> None:
        """Echo the body back chunk by chunk, as it arrives (a chunked one whole, once it has all come)."""
        if self.headers.get("Transfer-Encoding") == "chunked":
            return self.reply(200, self.read_chunked().decode())
        remaining = int(self.headers["Content-Length"])
        self.send_response(200)
        self.send_header("Content-Length", str(remaining))
        self.end_headers()
        while remaining:
            chunk = self.rfile.read1(min(remaining, 65536))
            if not chunk:
                break
            self.wfile.write(chunk)
            self.wfile.flush()
            remaining -= len(chunk)

    def read_chunked(self) -> bytes:
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):  # trailers
            pass
        return body

    def reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("request", format % args, flush=True)


if __name__ == "__main__":
    if flag("CRASH_FILE"):
        print("crashing on purpose", flush=True)
        sys.exit(4)
    time.sleep(float(os.environ.get("START_DELAY", "0")))
    port = int(os.environ.get("LISTEN_PORT") or os.environ["PORT"])  # LISTEN_PORT: a fixed port, wrongly
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on {port}", flush=True)
    if os.environ.get("EXIT_AFTER"):  # up and answering, then gone
        threading.Timer(float(os.environ["EXIT_AFTER"]), lambda: os._exit(5)).start()
    server.serve_forever()
