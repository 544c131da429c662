#!/usr/bin/env python3
"""Static server for the tessera-web demo: serves web/ (the page at /demo/, the package's
js/ and pkg/) and model files from a folder under /models/, on 127.0.0.1 only.

usage: serve.py [--port 8123] [--models DIR] [--root web/]
"""
import argparse
import functools
import http.server
import os
import sys
import urllib.parse

TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
         ".json": "application/json", ".gguf": "application/octet-stream",
         ".safetensors": "application/octet-stream", ".jinja": "text/plain"}


class Handler(http.server.SimpleHTTPRequestHandler):
    models_dir = None

    def guess_type(self, path):
        return TYPES.get(os.path.splitext(path)[1], None) or super().guess_type(path)

    def translate_path(self, path):
        clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if clean.startswith("/models/") and self.models_dir:
            rel = os.path.normpath(clean[len("/models/"):]).lstrip("/")
            if rel.startswith(".."):
                return os.path.join(self.models_dir, "__nonexistent__")
            return os.path.join(self.models_dir, rel)
        return super().translate_path(path)

    def do_GET(self):
        if self.path in ("/", "/index.html"):
            self.send_response(302)
            self.send_header("Location", "/demo/")
            self.end_headers()
            return
        super().do_GET()

    def end_headers(self):
        # Pages and code are re-validated on every load; model files may be cached.
        if not self.path.startswith("/models/"):
            self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("TESSERA_SERVE_QUIET") != "1":
            sys.stderr.write("serve: " + fmt % args + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--root", default=os.path.dirname(here))
    ap.add_argument("--models", default=os.environ.get("TESSERA_CACHE", os.path.expanduser("~/.cache/tessera/models")))
    a = ap.parse_args()
    Handler.models_dir = os.path.abspath(a.models)
    handler = functools.partial(Handler, directory=os.path.abspath(a.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), handler)
    print(f"tessera demo: http://127.0.0.1:{server.server_address[1]}/demo/ (models from {Handler.models_dir})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
