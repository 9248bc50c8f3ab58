"""Serve the JupyterLite site (build/lite) from 127.0.0.1, with the MIME types it needs.

    python3 tools/serve_lite.py [--port 8000] [--dir build/lite]

then open http://127.0.0.1:8000/lab/index.html?path=00_index.ipynb.  Any static web
server does, as long as it sends ``.wasm`` as application/wasm and ``.mjs`` as
JavaScript (browsers refuse a module or a streamed wasm otherwise; Python's own
table lacks them where /etc/mime.types is missing).  tests/browser/test_lite.py
uses ``LiteHandler``.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class LiteHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript",
                      ".js": "text/javascript", ".json": "application/json",
                      ".whl": "application/zip", ".ipynb": "application/json"}

    #: bytes of file bodies served so far, by every handler of the process (tests read it)
    sent = 0
    _lock = threading.Lock()

    def copyfile(self, source, outputfile):
        super().copyfile(source, outputfile)
        with LiteHandler._lock:
            LiteHandler.sent += source.tell()

    def log_message(self, *args):   # quiet
        pass


def server(site: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server of ``site`` on 127.0.0.1 (port 0: any free port); not started."""
    handler = functools.partial(LiteHandler, directory=str(site))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--dir", type=Path, default=REPO / "build" / "lite")
    args = ap.parse_args(argv)
    if not (args.dir / "index.html").is_file():
        raise SystemExit(f"no JupyterLite site in {args.dir}: run `make lite` first")
    srv = server(args.dir, args.port)
    print(f"serving {args.dir} at http://127.0.0.1:{srv.server_address[1]}/lab/index.html"
          "?path=00_index.ipynb (Ctrl-C stops)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
