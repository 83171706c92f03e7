"""examples/playground_server.py: the playground's files, the backend's port in chat-config.js, one-line failures."""

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable

import httpx
import pytest
from playground_server import PLAYGROUND

from example_processes import free_port, serving_playground, wait_until_up


def test_the_page_and_a_config_naming_the_backends_port_are_served() -> None:
    with serving_playground(9123) as url:
        config = httpx.get(f"{url}/chat-config.js?v=1")
        page = httpx.get(f"{url}/chat.html")
        missing = httpx.get(f"{url}/no-such-file.js")

    assert config.status_code == 200
    assert config.headers["content-type"] == "text/javascript; charset=utf-8"
    assert config.headers["cache-control"] == "no-store"
    prefix = "window.CHAT_PLAYGROUND = "
    assert config.text.startswith(prefix)
    assert json.loads(config.text.removeprefix(prefix).rstrip().rstrip(";")) == {"backendPort": 9123}
    assert page.status_code == 200
    assert page.text == (PLAYGROUND / "chat.html").read_text()
    assert '<script src="chat-config.js"></script>' in page.text
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--port", "70000"), "error: --port 70000 is not a port: give one from 0 to 65535"),
        (("--backend-port", "0"), "error: --backend-port 0 is not a port: give one from 1 to 65535"),
    ],
)
def test_a_port_out_of_range_fails_in_one_line(
    run_failing_example: Callable[..., str], args: tuple[str, ...], line: str
) -> None:
    assert run_failing_example("playground_server", *args, uri=None) == line


def test_a_port_in_use_fails_in_one_line_with_a_hint(run_failing_example: Callable[..., str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = run_failing_example("playground_server", "--bind", "127.0.0.1", "--port", str(port), uri=None)
    assert line == (
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): "
        "pass another --port (or --bind an address of this machine)"
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_playground_on_other_ports_gives_a_page_that_finds_its_backend_and_is_let_in(
    mongodb_uri: str, database_name: str
) -> None:
    """``make playground`` with ``HOST``, ``FRONTEND_PORT`` and ``BACKEND_PORT``: both halves agree on them."""
    frontend_port, backend_port = free_port(), free_port()
    make = subprocess.Popen(
        [
            *("make", "-C", str(PLAYGROUND), "playground", "HOST=127.0.0.1"),
            *(f"FRONTEND_PORT={frontend_port}", f"BACKEND_PORT={backend_port}"),
            f"BACKEND_ARGS=--database {database_name}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MONGODB_URI": mongodb_uri, "MODEL_PROVIDER": "scripted"},
        start_new_session=True,  # its own process group: make, both servers and their uv
    )
    page = f"http://127.0.0.1:{frontend_port}"
    try:
        wait_until_up(make, f"http://127.0.0.1:{backend_port}/health")
        wait_until_up(make, f"{page}/chat.html")
        config = httpx.get(f"{page}/chat-config.js").text
        preflight = httpx.options(
            f"http://127.0.0.1:{backend_port}/sessions/s/chat/stream",
            headers={
                "Origin": page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-user-id",
            },
        )
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.communicate(timeout=30)
    assert config == f'window.CHAT_PLAYGROUND = {{"backendPort": {backend_port}}};\n'
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == page
