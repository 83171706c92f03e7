"""The chat playground's static server: the page's files, plus ``chat-config.js`` naming the backend's port.

The page (``examples/playground/chat/chat.html``) talks to ``http://<the host it was loaded from>:<backend
port>`` unless its address says ``?backend=...``. So opened from another machine (``--bind 0.0.0.0``, the
page at ``http://192.168.1.5:8881``), it finds its backend at ``http://192.168.1.5:8880``; and a backend
on another port (``make playground BACKEND_PORT=9000``) is found without ``?backend=``::

    uv run python examples/playground_server.py                      # what `make frontend` runs
    uv run python examples/playground_server.py --bind 0.0.0.0 --port 8881 --backend-port 8880

Opened without this server (``python -m http.server``, say), the page assumes port 8880.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import failures

PLAYGROUND = Path(__file__).resolve().parent / "playground" / "chat"
CONFIG_PATH = "/chat-config.js"
DEFAULT_PORT = 8881
DEFAULT_BACKEND_PORT = 8880
MAX_PORT = 65535


class PlaygroundHandler(SimpleHTTPRequestHandler):
    """The playground directory, and ``/chat-config.js``: ``window.CHAT_PLAYGROUND = {"backendPort": ...}``."""

    def __init__(self, *args: Any, backend_port: int, quiet: bool = False, **kwargs: Any) -> None:
        self.backend_port = backend_port
        self.quiet = quiet
        super().__init__(*args, directory=str(PLAYGROUND), **kwargs)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != CONFIG_PATH:
            super().do_GET()
            return
        body = f"window.CHAT_PLAYGROUND = {json.dumps({'backendPort': self.backend_port})};\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def playground_server(bind: str, port: int, backend_port: int, quiet: bool = False) -> ThreadingHTTPServer:
    """The server, listening (port 0: a free one, see ``server_address``); run it with ``serve_forever()``."""
    handler = functools.partial(PlaygroundHandler, backend_port=backend_port, quiet=quiet)
    return ThreadingHTTPServer((bind, port), handler)


def checked_port(value: int, option: str, lowest: int) -> int:
    """``value`` if it is a TCP port from ``lowest`` up; else :class:`failures.ExampleError` naming ``option``."""
    if not lowest <= value <= MAX_PORT:
        raise failures.ExampleError(f"{option} {value} is not a port: give one from {lowest} to {MAX_PORT}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the page (default %(default)s)")
    parser.add_argument(
        "--backend-port",
        type=int,
        default=DEFAULT_BACKEND_PORT,
        help="port of the chat API on the page's host (default %(default)s)",
    )
    args = parser.parse_args()
    checked_port(args.port, "--port", 0)
    checked_port(args.backend_port, "--backend-port", 1)
    try:
        server = playground_server(args.bind, args.port, args.backend_port)
    except OSError as error:
        raise failures.ExampleError(
            f"cannot listen on {args.bind}:{args.port} ({error.strerror or error}): "
            "pass another --port (or --bind an address of this machine)"
        ) from None
    with server:
        print(f"Playground: http://{args.bind}:{args.port}/chat.html (its chat API: port {args.backend_port})")
        server.serve_forever()


if __name__ == "__main__":
    with failures.in_one_line():
        main()
