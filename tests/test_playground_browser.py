"""The chat playground in a real headless browser (Debian's chromium driven by Playwright).

Starts examples/example_fastapi_streaming.py as a subprocess (its real command line) against the
test server, serves examples/playground/chat/ from a static server on another loopback port, and
checks what the page shows: streamed answers arriving piece by piece, per-turn metrics, the
metadata panel, and the conversation restored from MongoDB after a reload. A screenshot goes to
test-artifacts/playground.png.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from chat_api import DEFAULT_AGENT_ID
from example_processes import free_port, run_example, stop, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
PLAYGROUND = ROOT / "examples" / "playground" / "chat"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WORD_DELAY_MS = 40
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is not installed (apt-get install chromium): the playground is NOT tested",
)

LAST_ASSISTANT = "[...document.querySelectorAll('.message.assistant')].pop()"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def static_server() -> Iterator[str]:
    """The playground directory over HTTP on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(PLAYGROUND)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def backend(mongodb_uri: str, database_name: str, static_server: str) -> Iterator[str]:
    """The streaming example, started from its command line, allowing the static server's origin."""
    port = free_port()
    process = run_example(
        "example_fastapi_streaming.py",
        *("--uri", mongodb_uri, "--database", database_name, "--port", str(port)),
        *("--allowed-origins", static_server, "--word-delay-ms", str(WORD_DELAY_MS)),
    )
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def test_playground_streams_keeps_the_session_and_shows_metrics_and_metadata(
    static_server: str, backend: str, mongo_db: Database[dict[str, Any]]
) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    def send(page: Page, text: str) -> tuple[str, str]:
        """Send ``text``; return the answer as seen mid-stream and when complete."""
        before = page.locator(".message.assistant").count()
        page.fill("#prompt", text)
        page.click("#send")
        # Resolves (in the page, so nothing is missed in between) while the answer is still
        # streaming and some text has arrived.
        partial = page.wait_for_function(
            f"""() => {{
                const bubbles = document.querySelectorAll('.message.assistant');
                const last = {LAST_ASSISTANT};
                if (bubbles.length <= {before} || last.dataset.state !== 'streaming') return false;
                const text = last.querySelector('.text').textContent;
                return text.length > 0 ? text : false;
            }}""",
            timeout=TIMEOUT_MS,
            polling="raf",
        ).json_value()
        page.wait_for_function(f"() => {LAST_ASSISTANT}.dataset.state === 'done'", timeout=TIMEOUT_MS)
        final = page.locator(".message.assistant .text").last.inner_text()
        return partial, final

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{static_server}/chat.html?backend={backend}")
            expect(page.locator("#backend-url")).to_have_text(backend)
            session_id = page.locator("#session-id").inner_text()
            assert session_id.startswith("web-")
            expect(page.locator(".empty")).to_be_visible()

            # Turn 1: user text containing markup is shown as text, never parsed as HTML.
            partial, first = send(page, "Hello <b>playground</b>")
            assert first.startswith('You said: "Hello <b>playground</b>".')
            assert first.startswith(partial)
            assert len(partial) < len(first), "the answer should arrive in pieces, not all at once"
            assert page.locator("#messages b").count() == 0
            assert page.locator(".message.user .text").first.inner_text() == "Hello <b>playground</b>"
            first_metrics = page.locator(".message.assistant .metrics").last.inner_text()
            assert f"tokens 10 in · {len(first.split())} out" in first_metrics
            assert "model latency 100 ms" in first_metrics
            assert "first chunk" in first_metrics

            # Turn 2 resumes the session stored by turn 1 (a new Agent on the server).
            partial, second = send(page, "What did I say before?")
            assert len(partial) < len(second)
            assert "received 2 earlier messages" in second
            assert "tokens 30 in" in page.locator(".message.assistant .metrics").last.inner_text()

            # The panel: statistics, and a metadata field set through the form.
            stats = page.locator("#stats")
            expect(stats).to_contain_text("messages4")
            expect(stats).to_contain_text("model calls2")
            page.fill("#metadata-key", "topic")
            page.fill("#metadata-value", "browser test")
            page.click("#metadata-form button[type=submit]")
            expect(page.locator("#metadata")).to_contain_text("topicbrowser test")
            page.fill("#metadata-key", "priority")
            page.fill("#metadata-value", "2")
            page.click("#metadata-form button[type=submit]")
            expect(page.locator("#metadata")).to_contain_text("priority2")

            # Reload: same session id from localStorage, conversation restored from the backend.
            page.reload()
            expect(page.locator(".message")).to_have_count(4)
            assert page.locator("#session-id").inner_text() == session_id
            texts = page.locator(".message .text").all_inner_texts()
            assert texts == ["Hello <b>playground</b>", first, "What did I say before?", second]
            restored_metrics = page.locator(".message.assistant .metrics").all_inner_texts()
            assert len(restored_metrics) == 2
            assert "tokens 10 in" in restored_metrics[0]
            assert "tokens 30 in" in restored_metrics[1]
            expect(page.locator("#metadata")).to_contain_text("topicbrowser test")
            expect(stats).to_contain_text("messages4")
            expect(stats).to_contain_text("input tokens40")
            expect(page.locator("#status")).to_contain_text("restored 4 messages")

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "playground.png"))
        finally:
            browser.close()

    assert errors == []
    document = mongo_db["sessions"].find_one({"_id": session_id})
    assert document is not None
    assert document["metadata"] == {"topic": "browser test", "priority": 2}
    stored = document["agents"][DEFAULT_AGENT_ID]["messages"]
    assert [m["message"]["content"][0]["text"] for m in stored] == [
        "Hello <b>playground</b>",
        first,
        "What did I say before?",
        second,
    ]
