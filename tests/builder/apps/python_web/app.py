import os
from http.server import BaseHTTPRequestHandler, HTTPServer

import greeting


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = greeting.hello(os.environ.get("WHO", "python")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
