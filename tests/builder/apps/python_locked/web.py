"""A small web app that answers with its Python version and the versions of the packages named in the query.

GET /?six&iniconfig answers `python 3.12; six 1.16.0; iniconfig absent`.
"""

import importlib.metadata
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit


def version(name: str) -> str:
    """The version of `name` installed in the slug (the stack's interpreter may have its own packages)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
    return dist.version if str(dist.locate_file("")).startswith(os.getcwd()) else "absent"


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        names = [name for name in urlsplit(self.path).query.split("&") if name]
        body = "; ".join([f"python {sys.version_info[0]}.{sys.version_info[1]}", *(f"{name} {version(name)}" for name in names)])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())


HTTPServer(("", int(os.environ["PORT"])), Hello).serve_forever()
