"""The runtime contract's web app (stdlib only, for any Python 3): GET / answers with its greeting and the boot id of
this process; GET /memory-limit with the memory limit its cgroup sets ("max" when none). It prints a line at start."""

import os
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOOT = uuid.uuid4().hex[:12]
MEMORY_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v2, v1


def memory_limit() -> str:
    for path in MEMORY_LIMIT_FILES:
        if os.path.exists(path):
            with open(path) as limit:
                return limit.read().strip()
    return "max"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/memory-limit":
            text = memory_limit()
        else:
            text = f"{os.environ.get('GREETING', 'hello')} from {BOOT}"
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("", port), Handler)
    print(f"contract app {BOOT} listening on {port}", flush=True)
    server.serve_forever()
