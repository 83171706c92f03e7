"""The chat playground in a real headless browser (Debian's chromium driven by Playwright).

examples/example_fastapi_streaming.py runs as a subprocess (its real command line) against the test
server; examples/playground/chat/ is served by the playground's own static server
(examples/playground_server.py, naming the backend's port) on another loopback port. The tests use
the page as a person would and check what it shows and what MongoDB stores (the app stores user
``u``'s session ``s`` as ``u/s``): users isolated from each other, the sidebar (pages, switch,
rename, delete), streamed Markdown answers with tool calls and metrics, leaving a conversation while
it streams, edit-and-resend forks, inert HTML, a conversation deleted elsewhere, the backend going
away and coming back (or refusing the page), the ?backend= override, long metadata, the message
limit, and a 390 px wide screen. Every state reached is screenshotted under
test-artifacts/playground/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import pytest
from pymongo import MongoClient
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager

from chat_api import DEFAULT_AGENT_ID, MAX_MESSAGE_CHARACTERS
from chromium import ARTIFACTS, chromium, needs_chromium
from example_processes import free_port, run_example, serving_playground, stop, wait_until_up
from scripted_model import ScriptedModel

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = needs_chromium

WORD_DELAY_MS = 15
TIMEOUT_MS = 20_000
LAST_ASSISTANT = "[...document.querySelectorAll('.message.assistant')].pop()"

PLACEHOLDERS_THAT_DO_NOT_FIT = """() => {
    const context = document.createElement('canvas').getContext('2d');
    return [...document.querySelectorAll('input[placeholder], textarea[placeholder]')]
        .filter((input) => input.getClientRects().length > 0)
        .map((input) => {
            const style = getComputedStyle(input);
            context.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const available = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return {id: input.id, placeholder: input.placeholder, needed: context.measureText(input.placeholder).width,
                    available};
        })
        .filter((input) => input.needed > input.available);
}"""


@pytest.fixture(scope="module")
def backend_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def static_server(backend_port: int) -> Iterator[str]:
    """The page, whose default backend is the module's backend (``backend_port`` on the page's host)."""
    with serving_playground(backend_port) as url:
        yield url


@pytest.fixture(scope="module")
def chat_database(mongo_client: MongoClient[dict[str, Any]]) -> Iterator[str]:
    """One database for the module's shared backend; tests keep apart by using users of their own."""
    name = f"t_playground_{uuid.uuid4().hex[:8]}"
    yield name
    mongo_client.drop_database(name)


def start_backend(mongodb_uri: str, database: str, static_server: str, port: int) -> Any:
    process = run_example(
        "example_fastapi_streaming.py",
        *("--uri", mongodb_uri, "--database", database, "--port", str(port)),
        *("--allowed-origins", static_server, "--word-delay-ms", str(WORD_DELAY_MS)),
    )
    wait_until_up(process, f"http://127.0.0.1:{port}/health")
    return process


@pytest.fixture(scope="module")
def backend(mongodb_uri: str, chat_database: str, static_server: str, backend_port: int) -> Iterator[str]:
    """The streaming example, started from its command line, allowing the static server's origin."""
    process = start_backend(mongodb_uri, chat_database, static_server, backend_port)
    try:
        yield f"http://127.0.0.1:{backend_port}"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def sessions(mongo_client: MongoClient[dict[str, Any]], chat_database: str) -> Any:
    return mongo_client[chat_database]["sessions"]


def unique_user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def stored(sessions: Any, user: str, session_id: str) -> Any:
    """``user``'s session ``session_id`` as MongoDB holds it (under ``<user>/<session_id>``), or None."""
    return sessions.find_one({"_id": f"{user}/{session_id}"})


@dataclass
class ChatPage:
    """One browser tab of the playground, with what went wrong in it (page errors, JavaScript dialogs)."""

    page: Page
    static_server: str
    backend: str
    problems: list[str] = field(default_factory=list)

    def open(self, user: str | None = None, session: str | None = None, backend: str | None = "default") -> None:
        """Load the page (as ``user``: chosen in the first-visit dialog if the tab has none yet)."""
        params = []
        if backend is not None:
            params.append(f"backend={self.backend if backend == 'default' else backend}")
        if session is not None:
            params.append(f"session={session}")
        self.page.goto(f"{self.static_server}/chat.html{'?' + '&'.join(params) if params else ''}")
        if user is not None:
            self.choose_user(user)

    def choose_user(self, user: str) -> None:
        dialog = self.page.locator("#user-dialog")
        if not dialog.is_visible():
            self.page.click("#user-button")
        self.page.fill("#user-input", user)
        self.page.click("#user-form button[type=submit]")
        self.expect("#user-name").to_have_text(user)

    def expect(self, selector: str) -> Any:
        from playwright.sync_api import expect

        return expect(self.page.locator(selector))

    def send(self, text: str) -> str:
        """Send ``text`` and wait for the answer; return the answer's Markdown source."""
        before = self.page.locator(".message.assistant[data-state=done]").count()
        self.page.fill("#prompt", text)
        self.page.press("#prompt", "Enter")
        self.page.wait_for_function(
            f"() => document.querySelectorAll('.message.assistant[data-state=done]').length > {before}",
            timeout=TIMEOUT_MS,
        )
        return self.answer_source()

    def answer_source(self, index: int = -1) -> str:
        """The Markdown source of an assistant bubble's text (all its text segments)."""
        sources: list[str] = (
            self.page.locator(".message.assistant")
            .nth(index)
            .locator(".markdown")
            .evaluate_all("(segments) => segments.map((segment) => segment.dataset.source)")
        )
        return "".join(sources)

    def session_id(self) -> str:
        match = re.search(r"[?&]session=([^&]+)", self.page.url)
        assert match, f"no session in {self.page.url}"
        return match.group(1)

    def sidebar_titles(self) -> list[str]:
        return self.page.locator("#session-list .session .title").all_inner_texts()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def open_tab(browser: Browser, static_server: str, backend: str) -> Iterator[Callable[..., ChatPage]]:
    """New tabs, each in a browser context of its own (its own localStorage: a different person)."""
    tabs: list[ChatPage] = []
    contexts = []

    def open_tab(width: int = 1280, height: int = 860, backend_url: str | None = None) -> ChatPage:
        context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        contexts.append(context)
        tab = ChatPage(context.new_page(), static_server, backend_url or backend)
        tab.page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
        tab.page.on("dialog", lambda dialog: (tab.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        tabs.append(tab)
        return tab

    yield open_tab
    for context in contexts:
        context.close()
    assert [problem for tab in tabs for problem in tab.problems] == []


def messages_of(document: dict[str, Any] | None) -> list[tuple[str, str]]:
    assert document is not None
    return [
        (
            entry["message"]["role"],
            " ".join(block.get("text", f"<{next(iter(block))}>") for block in entry["message"]["content"]),
        )
        for entry in document["agents"][DEFAULT_AGENT_ID]["messages"]
    ]


# -- streaming, Markdown, tools, metrics, metadata, reload ------------------------------------------


def test_streamed_markdown_answers_tool_calls_metrics_metadata_and_reload(
    open_tab: Callable[..., ChatPage], sessions: Any
) -> None:
    from playwright.sync_api import expect

    tab = open_tab()
    user = unique_user("stream")
    tab.open()
    tab.expect("#user-dialog").to_be_visible()
    tab.expect("#backend-url").to_have_text(tab.backend)
    tab.shot("01-first-visit-choose-a-user")
    tab.choose_user(user)
    tab.expect("#conversation-title").to_have_text("New chat")
    tab.expect("#messages .empty").to_contain_text("A new conversation")

    # Turn 1 streams: caught mid-answer in the page (rAF polling), then complete.
    tab.page.fill("#prompt", "Hello <b>playground</b> **bold**")
    tab.page.press("#prompt", "Enter")
    partial = tab.page.wait_for_function(
        f"""() => {{
            const last = {LAST_ASSISTANT};
            const segment = last && last.querySelector('.markdown');
            if (!segment || last.dataset.state !== 'streaming') return false;
            return segment.dataset.source.length > 0 ? segment.dataset.source : false;
        }}""",
        timeout=TIMEOUT_MS,
        polling="raf",
    ).json_value()
    tab.page.wait_for_function(f"() => {LAST_ASSISTANT}.dataset.state === 'done'", timeout=TIMEOUT_MS)
    first = tab.answer_source()
    assert first.startswith('You said: "Hello <b>playground</b> **bold**".')
    assert first.startswith(partial)
    assert len(partial) < len(first), "the answer should arrive in pieces, not all at once"
    session_id = tab.session_id()
    assert session_id.startswith("web-")
    # The user's markup is text; the model's Markdown is rendered: **bold** and **ScriptedModel** are <strong>.
    assert tab.page.locator(".message.user .text").first.inner_text() == "Hello <b>playground</b> **bold**"
    assert tab.page.locator("#messages b").count() == 0
    assert tab.page.locator(".message.assistant strong").all_inner_texts() == ["bold", "ScriptedModel"]
    assert tab.page.locator(".message.assistant code").all_inner_texts() == ["--provider"]
    live_first = tab.page.locator(".message.assistant .metrics").last.inner_text()
    words = len(first.split())
    assert f"tokens 10 in · {words} out · {10 + words} total · model latency 100 ms · first chunk" in live_first
    assert "turn " in live_first
    tab.expect("#conversation-title").to_have_text("Hello <b>playground</b> **bold**")
    tab.expect("#session-list .session").to_have_count(1)
    tab.expect("#session-list .session .title").to_have_text("Hello <b>playground</b> **bold**")
    tab.expect("#session-list .session .when").to_have_text("updated just now · 2 messages")

    # Turn 2 calls the tool: a collapsed block with the call and its result, then the answer.
    second = tab.send("count the letters in strawberry")
    tool = tab.page.locator(".message.assistant").last.locator("details.tool")
    expect(tool).to_have_count(1)
    assert tool.get_attribute("open") is None, "tool blocks start collapsed"
    expect(tool.locator("summary")).to_have_text("Tool call count_characters · done")
    expect(tool.locator("pre.result")).not_to_be_visible()
    tool.locator("summary").click()
    expect(tool.locator("pre.input")).to_have_text('{\n  "text": "strawberry"\n}')
    expect(tool.locator("pre.result")).to_have_text("10 characters, 10 letters, 1 word")
    assert second == "The `count_characters` tool counted **10 characters, 10 letters, 1 word**."
    live_second = tab.page.locator(".message.assistant .metrics").last.inner_text()
    assert "tokens 80 in · 11 out · 91 total · model latency 200 ms · 2 model calls · first chunk" in live_second
    tab.shot("02-streamed-markdown-and-a-tool-call")
    assert tab.page.evaluate(PLACEHOLDERS_THAT_DO_NOT_FIT) == []

    # Metadata through the panel; statistics.
    stats = tab.page.locator("#stats")
    expect(stats).to_contain_text("messages6")
    expect(stats).to_contain_text("model calls3")
    tab.page.fill("#metadata-key", "topic")
    tab.page.fill("#metadata-value", "browser test")
    tab.page.click("#metadata-form button[type=submit]")
    tab.expect("#metadata dt").to_have_text(["topic"])
    tab.expect("#metadata dd").to_have_text(["browser test"])
    tab.page.fill("#metadata-key", "priority")
    tab.page.fill("#metadata-value", "2")
    tab.page.click("#metadata-form button[type=submit]")
    tab.expect("#metadata dt").to_have_text(["topic", "priority"])
    tab.expect("#metadata dd").to_have_text(["browser test", "2"])

    # Reload: the same session (from the address), restored from MongoDB with the same per-turn metrics.
    tab.page.reload()
    tab.expect(".message").to_have_count(4)
    assert tab.session_id() == session_id
    assert tab.page.locator(".message.user .text").all_inner_texts() == [
        "Hello <b>playground</b> **bold**",
        "count the letters in strawberry",
    ]
    assert tab.answer_source(0) == first
    assert tab.answer_source(1) == second
    restored = tab.page.locator(".message.assistant .metrics").all_inner_texts()
    assert restored == [
        live_first.split(" · first chunk")[0],
        live_second.split(" · first chunk")[0],
    ], "a restored turn shows the stored figures of the live one (not its server timings, which are not stored)"
    restored_tool = tab.page.locator("details.tool")
    assert restored_tool.get_attribute("open") is None
    expect(restored_tool.locator("summary")).to_have_text("Tool call count_characters · done")
    expect(restored_tool.locator("pre.result")).to_have_text("10 characters, 10 letters, 1 word")
    tab.expect("#metadata dt").to_have_text(["topic", "priority"])
    tab.expect("#metadata dd").to_have_text(["browser test", "2"])
    expect(stats).to_contain_text("input tokens90")
    tab.expect("#status").to_contain_text("restored 6 messages")
    tab.shot("03-restored-after-reload")

    # Export: a JSON download of what is stored.
    with tab.page.expect_download() as download_info:
        tab.page.click("#export")
    download = download_info.value
    assert download.suggested_filename == f"session-{session_id}.json"
    exported = json.loads(Path(download.path()).read_text())
    assert "count the letters in strawberry" in json.dumps(exported)

    document = stored(sessions, user, session_id)
    assert document["user_id"] == user
    assert document["metadata"] == {"topic": "browser test", "priority": 2}
    assert messages_of(document) == [
        ("user", "Hello <b>playground</b> **bold**"),
        ("assistant", first),
        ("user", "count the letters in strawberry"),
        ("assistant", "<toolUse>"),
        ("user", "<toolResult>"),
        ("assistant", second),
    ]


# -- users ----------------------------------------------------------------------------------------------


def test_two_users_never_see_each_others_sessions(open_tab: Callable[..., ChatPage], sessions: Any) -> None:
    alice, bob = unique_user("alice"), unique_user("bob")
    alice_tab, bob_tab = open_tab(), open_tab()
    alice_tab.open(alice)
    alice_tab.send("Alice's own plans")
    bob_tab.open(bob)
    bob_tab.send("Bob's private notes")
    bob_session = bob_tab.session_id()

    alice_tab.page.reload()
    alice_tab.expect("#session-list .session").to_have_count(1)
    assert alice_tab.sidebar_titles() == ["Alice's own plans"]
    assert bob_tab.sidebar_titles() == ["Bob's private notes"]

    # Bob's session id in Alice's address bar: not found, and nothing of it shown.
    alice_tab.open(session=bob_session)
    alice_tab.expect("#messages .not-found").to_contain_text("Conversation not found")
    alice_tab.expect("#conversation-title").to_have_text("Conversation not found")
    alice_tab.expect("#prompt").to_be_disabled()
    assert "Bob" not in alice_tab.page.locator("main").inner_text()
    alice_tab.shot("04-another-users-session-by-address-is-not-found")

    # The header's switcher: the same tab as Bob shows Bob's list, then Alice's again.
    alice_tab.choose_user(bob)
    alice_tab.expect("#session-list .session .title").to_have_text(["Bob's private notes"])
    alice_tab.choose_user(alice)
    alice_tab.expect("#session-list .session .title").to_have_text(["Alice's own plans"])
    alice_tab.expect("#messages .message.user .text").to_have_text(["Alice's own plans"])

    assert messages_of(stored(sessions, bob, bob_session))[0] == ("user", "Bob's private notes")
    assert sessions.count_documents({"user_id": alice}) == 1
    assert sessions.count_documents({"user_id": bob}) == 1


# -- the sidebar ----------------------------------------------------------------------------------------


def seed_conversations(client: MongoClient[dict[str, Any]], database: str, user: str, count: int) -> list[str]:
    """``count`` one-turn conversations of ``user``, stored through the library as the app does; oldest first."""
    session_ids = []
    for number in range(count):
        session_id = f"seeded-{user}-{number:02d}"
        with MongoDBSessionManager(
            f"{user}/{session_id}", client=client, database_name=database, user_id=user
        ) as manager:
            agent = Agent(
                model=ScriptedModel.echo(), agent_id=DEFAULT_AGENT_ID, session_manager=manager, callback_handler=None
            )
            agent(f"Seeded question {number:02d}")
        session_ids.append(session_id)
    return session_ids


def test_sidebar_pages_on_scroll_switches_renames_and_deletes(
    open_tab: Callable[..., ChatPage],
    mongo_client: MongoClient[dict[str, Any]],
    chat_database: str,
    sessions: Any,
) -> None:
    from playwright.sync_api import expect

    user = unique_user("sidebar")
    seeded = seed_conversations(mongo_client, chat_database, user, 25)
    newest_first = [f"Seeded question {number:02d}" for number in range(24, -1, -1)]
    tab = open_tab()
    tab.open(user)

    # The first page (20), newest first; scrolling to the end loads the rest through the cursor.
    tab.expect("#session-list .session").to_have_count(20)
    assert tab.sidebar_titles() == newest_first[:20]
    tab.shot("05-sidebar-first-page")
    tab.page.locator("#sidebar").evaluate("(sidebar) => sidebar.scrollTo(0, sidebar.scrollHeight)")
    tab.expect("#session-list .session").to_have_count(25)
    assert tab.sidebar_titles() == newest_first
    tab.expect("#session-list-end").to_have_text("That is all of your conversations.")

    # Switch: the conversation opens, marked current, in the address.
    tab.page.locator("#session-list .session .open", has_text="Seeded question 07").click()
    tab.expect(".message.user .text").to_have_text(["Seeded question 07"])
    tab.expect(".message.assistant .markdown").to_have_text(["echo: Seeded question 07"])
    assert tab.session_id() == seeded[7]
    tab.expect('.session[aria-current="true"] .title').to_have_text("Seeded question 07")
    tab.expect("#conversation-title").to_have_text("Seeded question 07")

    # Rename inline (Enter saves): the title is stored and the conversation moves to the top.
    current = tab.page.locator('.session[aria-current="true"]')
    current.locator("button.rename").click()
    tab.page.fill(".session .rename-input", "Renamed in the browser")
    tab.shot("06-sidebar-rename-inline")
    tab.page.press(".session .rename-input", "Enter")
    tab.expect("#session-list .session .title").to_have_count(25)
    expect(tab.page.locator("#session-list .session .title").nth(0)).to_have_text("Renamed in the browser")
    tab.expect("#conversation-title").to_have_text("Renamed in the browser")
    assert stored(sessions, user, seeded[7])["title"] == "Renamed in the browser"
    # Escape cancels a rename.
    other = tab.page.locator(".session", has_text="Seeded question 03")
    other.hover()
    other.locator("button.rename").click()
    tab.page.fill(".session .rename-input", "never saved")
    tab.page.press(".session .rename-input", "Escape")
    tab.expect(".session .rename-input").to_have_count(0)
    assert "title" not in stored(sessions, user, seeded[3])

    # Delete asks first; Cancel keeps the conversation, Delete removes it from the list and MongoDB.
    victim = tab.page.locator(".session", has_text="Seeded question 03")
    victim.hover()
    victim.locator("button.delete").click()
    tab.expect(".session .confirm").to_contain_text("Delete “Seeded question 03”? This cannot be undone.")
    tab.shot("07-sidebar-delete-confirmation")
    tab.page.click(".session .confirm button:has-text('Cancel')")
    tab.expect("#session-list .session").to_have_count(25)
    victim.hover()
    victim.locator("button.delete").click()
    tab.page.click(".session .confirm button.danger")
    tab.expect("#session-list .session").to_have_count(24)
    assert "Seeded question 03" not in tab.sidebar_titles()
    assert stored(sessions, user, seeded[3]) is None

    # Deleting the open conversation leaves a new chat.
    tab.page.locator('.session[aria-current="true"] button.delete').click()
    tab.page.click(".session .confirm button.danger")
    tab.expect("#conversation-title").to_have_text("New chat")
    tab.expect("#session-list .session").to_have_count(23)
    assert stored(sessions, user, seeded[7]) is None
    assert sessions.count_documents({"user_id": user}) == 23


# -- edit and resend --------------------------------------------------------------------------------------


def test_edit_and_resend_forks_the_conversation_and_keeps_the_original(
    open_tab: Callable[..., ChatPage], sessions: Any
) -> None:
    user = unique_user("edit")
    tab = open_tab()
    tab.open(user)
    first = tab.send("First question")
    tab.send("Second question")
    original = tab.session_id()
    stored_before = stored(sessions, user, original)

    second_user = tab.page.locator(".message.user").nth(1)
    second_user.locator("button.edit").click()
    editor = second_user.locator(".editor textarea")
    editor.fill("Second question, edited")
    tab.shot("08-edit-a-sent-message")
    second_user.locator(".editor button.primary").click()
    tab.page.wait_for_function(
        "() => new URLSearchParams(location.search).get('session') !== " + json.dumps(original), timeout=TIMEOUT_MS
    )
    tab.page.wait_for_function(
        f"() => document.querySelectorAll('.message').length === 4 && {LAST_ASSISTANT}.dataset.state === 'done'",
        timeout=TIMEOUT_MS,
    )
    fork = tab.session_id()
    tab.expect(".message.user .text").to_have_text(["First question", "Second question, edited"])
    edited_answer = tab.answer_source()
    assert edited_answer.startswith('You said: "Second question, edited".')
    assert "received 2 earlier messages" in edited_answer  # the fork holds the first turn
    tab.expect("#session-list .session").to_have_count(2)
    tab.expect('.session[aria-current="true"]').to_have_attribute("data-session-id", fork)
    tab.shot("09-edited-in-a-fork")

    # The original is intact, and listed; the fork holds the first turn and the edited one.
    assert stored(sessions, user, original) == stored_before
    fork_document = stored(sessions, user, fork)
    assert fork_document["user_id"] == user
    assert messages_of(fork_document) == [
        ("user", "First question"),
        ("assistant", first),
        ("user", "Second question, edited"),
        ("assistant", edited_answer),
    ]

    # Reloading keeps the fork open; the original opens from the sidebar as it was.
    tab.page.reload()
    assert tab.session_id() == fork
    tab.expect(".message.user .text").to_have_text(["First question", "Second question, edited"])
    tab.page.locator(f'.session[data-session-id="{original}"] .open').click()
    tab.expect(".message.user .text").to_have_text(["First question", "Second question"])


# -- HTML from the user and the model ----------------------------------------------------------------------


def test_html_and_script_links_from_user_and_model_render_inert(
    open_tab: Callable[..., ChatPage], sessions: Any
) -> None:
    payload = (
        "<img src=x onerror=\"alert('xss')\"> <script>alert('xss')</script> "
        "[click me](javascript:alert('xss')) [safe](https://example.com/safe)"
    )
    tab = open_tab()
    user = unique_user("xss")
    tab.open(user)
    answer = tab.send(payload)
    assert payload in answer  # ScriptedModel returns the payload inside its answer

    def assert_inert() -> None:
        assert tab.page.locator("img").count() == 0
        assert tab.page.locator("#messages script, #sidebar script, iframe").count() == 0
        assert tab.page.locator("a[href^='javascript' i]").count() == 0
        links = tab.page.locator(".message.assistant a")
        assert links.count() == 1
        assert links.get_attribute("href") == "https://example.com/safe"
        assert links.get_attribute("rel") == "noopener noreferrer"
        assert links.get_attribute("target") == "_blank"
        assert tab.page.locator(".message.user .text").inner_text() == payload
        assert "[click me](javascript:alert('xss'))" in tab.page.locator(".message.assistant .markdown").inner_text()
        assert "<img src=x" in tab.page.locator("#session-list .title").inner_text()
        assert tab.problems == []  # no dialog opened, no script error

    assert_inert()
    tab.shot("10-html-and-javascript-links-render-as-text")
    tab.page.reload()  # the restored history goes through the same renderer
    tab.expect(".message").to_have_count(2)
    assert_inert()
    assert messages_of(stored(sessions, user, tab.session_id()))[0] == ("user", payload)


# -- the backend away and back ------------------------------------------------------------------------------


def test_unreachable_backend_shows_a_banner_failed_sends_retry_and_it_recovers(
    browser: Browser, mongodb_uri: str, chat_database: str, sessions: Any
) -> None:
    port = free_port()
    backend = f"http://127.0.0.1:{port}"
    with serving_playground(port) as static_server:
        process = start_backend(mongodb_uri, chat_database, static_server, port)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        tab = ChatPage(context.new_page(), static_server, backend)
        tab.page.on("pageerror", lambda error: tab.problems.append(str(error)))
        try:
            outage_during(tab, process, mongodb_uri, chat_database, sessions)
        finally:
            context.close()
            stop(process)


def outage_during(tab: ChatPage, process: Any, mongodb_uri: str, chat_database: str, sessions: Any) -> None:
    """The page through the backend's stop and restart (the test above)."""
    backend, port, static_server = tab.backend, int(tab.backend.rsplit(":", 1)[1]), tab.static_server
    user = unique_user("outage")
    try:
        tab.open(user, backend=None)  # the page's default backend: the one its server names
        tab.send("Before the outage")
        session_id = tab.session_id()
        tab.expect("#banner").to_be_hidden()

        stop(process)
        tab.page.reload()
        tab.expect("#banner").to_be_visible()
        tab.expect("#banner").to_contain_text(f"Cannot reach the chat server at {backend}")
        tab.expect("#messages .empty").to_contain_text("could not be loaded: the chat server is not answering")
        messages_text = tab.page.locator("#messages").inner_text()
        assert "A new conversation" not in messages_text
        assert "No messages" not in messages_text
        tab.expect("#session-list-end").to_have_text("Your conversations appear when the chat server answers.")
        tab.shot("11-backend-unreachable")

        tab.page.fill("#prompt", "During the outage")
        tab.page.press("#prompt", "Enter")
        failed = tab.page.locator(".message.user[data-state=failed]")
        tab.expect(".message.user[data-state=failed] .failure").to_contain_text(
            f"Not sent: cannot reach the chat server at {backend}."
        )
        tab.expect(".message.user[data-state=failed] button.retry").to_be_visible()
        tab.shot("12-send-failed-with-retry")

        process = start_backend(mongodb_uri, chat_database, static_server, port)
        tab.expect("#banner").to_be_hidden(timeout=TIMEOUT_MS)  # the page polls /health
        tab.expect(".message.user .text").to_have_text(["Before the outage", "During the outage"])
        tab.expect("#session-list .session").to_have_count(1)
        failed.locator("button.retry").click()
        tab.page.wait_for_function(
            "() => document.querySelectorAll('.message.assistant[data-state=done]').length === 2", timeout=TIMEOUT_MS
        )
        tab.expect(".message.user[data-state=failed]").to_have_count(0)
        tab.shot("13-backend-back-and-retried")
        assert [text for role, text in messages_of(stored(sessions, user, session_id)) if role == "user"] == [
            "Before the outage",
            "During the outage",
        ]
        assert tab.problems == []
    finally:
        stop(process)


# -- ?backend= and narrow screens --------------------------------------------------------------------------------


@pytest.fixture
def other_backend(mongo_client: MongoClient[dict[str, Any]], mongodb_uri: str, static_server: str) -> Iterator[str]:
    """A second chat server, on a database of its own: another backend than the page's default."""
    database = f"t_playground_other_{uuid.uuid4().hex[:8]}"
    port = free_port()
    process = start_backend(mongodb_uri, database, static_server, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        mongo_client.drop_database(database)


def test_backend_in_the_address_is_named_and_keeps_its_own_user_and_conversations(
    open_tab: Callable[..., ChatPage], other_backend: str, sessions: Any
) -> None:
    tab = open_tab()
    home_user, visitor = unique_user("home"), unique_user("visitor")
    # What the old page left behind: a ?backend= remembered forever, pointing at a dead server.
    tab.open(backend=None)
    tab.page.evaluate(
        "(user) => { localStorage.setItem('chatPlayground.backend', 'http://127.0.0.1:9'); "
        "localStorage.setItem('chatPlayground.user', user); }",
        home_user,
    )
    tab.open(backend=None)
    tab.expect("#backend-url").to_have_text(tab.backend)  # the default: the port the page's server names
    tab.expect("#backend-notice").to_be_hidden()
    assert tab.page.evaluate("() => localStorage.getItem('chatPlayground.backend')") is None
    tab.expect("#user-name").to_have_text(home_user)
    tab.send("At home")
    home_session = tab.session_id()

    # Another backend from the address: named in a notice; none of the default's user or conversations.
    tab.page.goto(f"{tab.static_server}/chat.html?backend={other_backend}")
    tab.expect("#backend-url").to_have_text(other_backend)
    tab.expect("#backend-notice").to_be_visible()
    tab.expect("#backend-notice").to_contain_text(f"This visit uses the chat server at {other_backend}")
    tab.expect("#backend-notice").to_contain_text(f"not the default {tab.backend}")
    tab.expect("#user-dialog").to_be_visible()  # the default's user is not sent to this server
    tab.choose_user(visitor)
    tab.expect("#conversation-title").to_have_text("New chat")  # the default's last conversation is not opened
    tab.expect("#session-list-end").to_have_text("No conversations yet: your first message starts one.")
    tab.send("Away from home")
    away_session = tab.session_id()
    assert parse_qs(urlparse(tab.page.url).query)["backend"] == [other_backend]  # kept while this visit goes on
    tab.shot("14-backend-from-the-address")
    tab.page.reload()  # the same visit: its own user and conversation still
    tab.expect("#user-name").to_have_text(visitor)
    tab.expect(".message.user .text").to_have_text(["Away from home"])

    # Back to the default: its own user, its last conversation, its list; nothing of the other server kept.
    tab.page.click("#backend-reset")
    tab.page.wait_for_url(re.compile(r"chat\.html\?session="))
    assert "backend=" not in tab.page.url
    assert tab.session_id() == home_session
    tab.expect("#backend-notice").to_be_hidden()
    tab.expect("#backend-url").to_have_text(tab.backend)
    tab.expect("#user-name").to_have_text(home_user)
    tab.expect(".message.user .text").to_have_text(["At home"])
    tab.expect("#session-list .session .title").to_have_text(["At home"])
    kept: list[str] = tab.page.evaluate("() => Object.keys(localStorage)")
    assert [key for key in kept if other_backend in key or visitor in key] == []
    assert stored(sessions, visitor, away_session) is None  # on the other server's database only
    assert sessions.count_documents({"user_id": home_user}) == 1


def test_works_390_pixels_wide(open_tab: Callable[..., ChatPage]) -> None:
    tab = open_tab(width=390, height=844)
    user = unique_user("narrow")
    tab.open()
    assert tab.page.evaluate(PLACEHOLDERS_THAT_DO_NOT_FIT) == []  # the user dialog
    tab.choose_user(user)
    tab.send("A message from a phone, long enough to wrap over several lines of a narrow screen")
    tab.send("count the words in this sentence")

    assert tab.page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert tab.page.evaluate(PLACEHOLDERS_THAT_DO_NOT_FIT) == []
    tab.expect("#sidebar").to_be_hidden()
    tab.expect("#send").to_be_visible()
    tab.expect("#toggle-sidebar").to_be_visible()
    tab.shot("15-narrow-conversation")

    tab.page.click("#toggle-sidebar")
    tab.expect("#sidebar").to_be_visible()
    tab.expect("#session-list .session").to_have_count(1)
    tab.shot("16-narrow-sidebar-drawer")
    tab.page.click("#new-chat")
    tab.expect("#sidebar").to_be_hidden()
    tab.expect("#conversation-title").to_have_text("New chat")
    tab.page.click("#toggle-sidebar")
    tab.page.locator("#session-list .session .open").click()
    tab.expect("#sidebar").to_be_hidden()
    tab.expect(".message.user").to_have_count(2)

    tab.page.click("#toggle-details")
    tab.expect("#details").to_be_visible()
    tab.expect("#stats").to_contain_text("messages6")
    assert tab.page.evaluate(PLACEHOLDERS_THAT_DO_NOT_FIT) == []  # the metadata form
    assert tab.page.evaluate("() => document.documentElement.scrollWidth") <= 390
    tab.shot("17-narrow-details-panel")


# -- leaving a streaming answer, retrying a stored message ------------------------------------------------------


def test_leaving_a_conversation_while_it_streams_and_coming_back_shows_the_answer_arriving(
    open_tab: Callable[..., ChatPage], sessions: Any
) -> None:
    user = unique_user("leave")
    tab = open_tab()
    tab.open(user)
    tab.send("The other conversation")
    other = tab.session_id()
    tab.page.click("#new-chat")
    tab.send("First turn here")
    streaming_session = tab.session_id()

    long_message = "Tell me a long story about " + " ".join(f"word{number}" for number in range(1000))
    tab.page.fill("#prompt", long_message)
    tab.page.press("#prompt", "Enter")
    tab.page.wait_for_function(
        f"() => {LAST_ASSISTANT}.dataset.state === 'streaming' && {LAST_ASSISTANT}.querySelector('.markdown')",
        timeout=TIMEOUT_MS,
    )
    # Away while it streams: the other conversation, as it is, with nothing of this answer or of a failure.
    tab.page.locator(f'.session[data-session-id="{other}"] .open').click()
    tab.expect(".message.user .text").to_have_text(["The other conversation"])
    tab.expect(".message.assistant[data-state=done]").to_have_count(1)
    tab.expect(".failure").to_have_count(0)
    assert "word1" not in tab.page.locator("#messages").inner_text()

    # Back while it still streams: the answer keeps arriving in place; no "No answer stored".
    tab.page.locator(f'.session[data-session-id="{streaming_session}"] .open').click()
    tab.expect(".message.user .text").to_have_text(["First turn here", long_message])
    still_streaming = tab.page.evaluate(f"() => {LAST_ASSISTANT}.dataset.state")
    tab.expect(".failure").to_have_count(0)
    tab.shot("18-back-in-a-conversation-while-it-streams")
    # the answer's 1,000 words take 15 s or more to arrive
    tab.page.wait_for_function(f"() => {LAST_ASSISTANT}.dataset.state === 'done'", timeout=4 * TIMEOUT_MS)
    tab.expect(".message").to_have_count(4)
    tab.expect(".failure").to_have_count(0)
    assert still_streaming == "streaming", "came back after the answer was complete: make it longer"
    assert tab.answer_source().startswith(f'You said: "{long_message}".')
    assert [role for role, _ in messages_of(stored(sessions, user, streaming_session))] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def store_unanswered(client: MongoClient[dict[str, Any]], database: str, user: str, text: str) -> str:
    """A conversation of ``user`` whose turn failed after storing its message (the model was down)."""
    from scripted_model import Raise

    session_id = f"unanswered-{uuid.uuid4().hex[:8]}"
    with MongoDBSessionManager(
        session_id=f"{user}/{session_id}", client=client, database_name=database, user_id=user
    ) as manager:
        agent = Agent(
            model=ScriptedModel([Raise(RuntimeError("model down"))]),
            agent_id=DEFAULT_AGENT_ID,
            session_manager=manager,
            callback_handler=None,
        )
        with pytest.raises(RuntimeError):
            agent("Did this ever get an answer?")
    return session_id


def test_retry_of_a_stored_unanswered_message_answers_it_without_storing_it_again(
    open_tab: Callable[..., ChatPage], mongo_client: MongoClient[dict[str, Any]], chat_database: str, sessions: Any
) -> None:
    user = unique_user("retry")
    session_id = store_unanswered(mongo_client, chat_database, user, "Did this ever get an answer?")
    tab = open_tab()
    tab.open(user, session=session_id)
    tab.expect(".message.user[data-state=failed] .failure").to_contain_text("No answer was stored for this message.")
    tab.shot("19-a-stored-message-without-an-answer")
    tab.page.click(".message.user[data-state=failed] button.retry")
    tab.page.wait_for_function(f"() => {LAST_ASSISTANT}?.dataset.state === 'done'", timeout=TIMEOUT_MS)
    tab.expect(".message.user .text").to_have_text(["Did this ever get an answer?"])
    tab.expect(".failure").to_have_count(0)
    assert tab.answer_source().startswith('You said: "Did this ever get an answer?".')
    assert [role for role, _ in messages_of(stored(sessions, user, session_id))] == ["user", "assistant"]
    tab.page.reload()
    tab.expect(".message").to_have_count(2)
    tab.expect(".failure").to_have_count(0)


# -- a conversation deleted elsewhere --------------------------------------------------------------------------


def test_a_conversation_deleted_in_another_tab_is_not_recreated_by_the_next_message(
    open_tab: Callable[..., ChatPage], sessions: Any
) -> None:
    user = unique_user("gone")
    here, elsewhere = open_tab(), open_tab()
    here.open(user)
    here.send("Soon deleted elsewhere")
    session_id = here.session_id()
    here.page.click("#new-chat")
    here.send("Kept")
    kept = here.session_id()
    here.page.locator(f'.session[data-session-id="{session_id}"] .open').click()
    here.expect(".message.user .text").to_have_text(["Soon deleted elsewhere"])

    elsewhere.open(user)
    doomed = elsewhere.page.locator(f'.session[data-session-id="{session_id}"]')
    doomed.hover()
    doomed.locator("button.delete").click()
    elsewhere.page.click(".session .confirm button.danger")
    elsewhere.expect("#session-list .session").to_have_count(1)
    assert stored(sessions, user, session_id) is None

    here.page.fill("#prompt", "Are you still there?")
    here.page.press("#prompt", "Enter")
    here.expect("#messages .gone").to_contain_text("This conversation no longer exists")
    here.expect("#session-list .session").to_have_count(1)  # the list as the server has it now
    here.expect("#session-list .session").to_have_attribute("data-session-id", kept)
    here.expect("#prompt").to_have_value("Are you still there?")  # nothing lost, nothing sent
    here.expect("#conversation-title").to_have_text("New chat")
    here.shot("20-deleted-in-another-tab")
    assert stored(sessions, user, session_id) is None  # not created again
    assert sessions.count_documents({"user_id": user}) == 1


# -- long metadata, buttons while busy, focus, Escape -------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 860)])
def test_long_metadata_keys_and_values_wrap_inside_the_panel(
    open_tab: Callable[..., ChatPage], sessions: Any, width: int, height: int
) -> None:
    user = unique_user("metadata")
    tab = open_tab(width=width, height=height)
    tab.open(user)
    tab.send("Metadata of any length")
    if width < 1280:
        tab.page.click("#toggle-details")
    tab.expect("#details").to_be_visible()
    long_key, long_value = "k" * 150, "v" * 3000
    tab.page.fill("#metadata-key", long_key)
    tab.page.fill("#metadata-value", long_value)
    tab.page.click("#metadata-form button[type=submit]")
    tab.expect("#metadata dd").to_have_text([long_value])
    tab.expect("#metadata dt").to_have_text([long_key])

    overflow = tab.page.evaluate(
        """() => {
            const panel = document.getElementById('details').getBoundingClientRect();
            const inside = [...document.querySelectorAll('#metadata dt, #metadata dd, #metadata button')]
                .map((node) => node.getBoundingClientRect())
                .filter((box) => box.left < panel.left - 0.5 || box.right > panel.right + 0.5);
            const details = document.getElementById('details');
            return {outside: inside.length, panelScroll: details.scrollWidth - details.clientWidth,
                    pageScroll: document.documentElement.scrollWidth - window.innerWidth};
        }"""
    )
    assert overflow == {"outside": 0, "panelScroll": 0, "pageScroll": 0}
    tab.expect("#metadata button.remove").to_be_visible()
    # Cut short to a few lines, the whole in the tooltip; the status line quotes an excerpt only.
    value = tab.page.locator("#metadata dd")
    assert value.get_attribute("title") == long_value
    assert value.evaluate("(node) => node.scrollHeight > node.clientHeight && node.clientHeight < 100")
    tab.expect("#status").to_have_text(f'metadata field "{"k" * 39}…" saved')
    tab.shot(f"21-long-metadata-{width}")
    assert stored(sessions, user, tab.session_id())["metadata"] == {long_key: long_value}


def test_buttons_wait_for_the_request_focus_returns_and_escape_closes(open_tab: Callable[..., ChatPage]) -> None:
    user = unique_user("keys")
    tab = open_tab(width=390, height=844)
    tab.open(user)
    tab.send("First message")

    # While the answer streams: Send and Edit wait; afterwards they work again and the focus is in the box.
    tab.page.fill("#prompt", "Second message with an answer that takes a while to arrive")
    tab.page.press("#prompt", "Enter")
    tab.page.wait_for_function(f"() => {LAST_ASSISTANT}.dataset.state === 'streaming'", timeout=TIMEOUT_MS)
    tab.expect("#send").to_be_disabled()
    tab.expect(".message.user button.edit:disabled").to_have_count(2)
    tab.page.wait_for_function(f"() => {LAST_ASSISTANT}.dataset.state === 'done'", timeout=TIMEOUT_MS)
    tab.expect("#send").to_be_enabled()
    tab.expect(".message.user button.edit").to_have_count(2)
    for edit in tab.page.locator(".message.user button.edit").all():
        assert edit.is_enabled()
    tab.page.wait_for_function("() => document.activeElement === document.getElementById('prompt')")

    # Escape closes: the user dialog, the editor, the delete question, the drawer, the details panel.
    tab.page.click("#user-button")
    tab.expect("#user-dialog").to_be_visible()
    tab.page.keyboard.press("Escape")
    tab.expect("#user-dialog").to_be_hidden()
    tab.expect("#user-name").to_have_text(user)

    tab.page.locator(".message.user button.edit").first.click()
    tab.expect(".message.user .editor").to_have_count(1)
    tab.page.keyboard.press("Escape")
    tab.expect(".message.user .editor").to_have_count(0)
    tab.expect(".message.user .text").to_have_text(
        ["First message", "Second message with an answer that takes a while to arrive"]
    )

    tab.page.click("#toggle-sidebar")
    tab.expect("#sidebar").to_be_visible()
    tab.page.locator('.session[aria-current="true"] button.delete').click()
    tab.expect(".session .confirm").to_be_visible()
    tab.page.keyboard.press("Escape")
    tab.expect(".session .confirm").to_have_count(0)
    tab.expect("#sidebar").to_be_visible()  # the first Escape closed the question only
    tab.page.keyboard.press("Escape")
    tab.expect("#sidebar").to_be_hidden()

    tab.page.click("#toggle-details")
    tab.expect("#details").to_be_visible()
    tab.page.keyboard.press("Escape")
    tab.expect("#details").to_be_hidden()
    tab.expect("#session-list .session").to_have_count(1)  # nothing was deleted


def test_a_backend_that_refuses_the_page_is_named_as_such(
    open_tab: Callable[..., ChatPage], mongodb_uri: str, chat_database: str
) -> None:
    port = free_port()
    process = run_example(
        "example_fastapi_streaming.py",
        *("--uri", mongodb_uri, "--database", chat_database, "--port", str(port)),
        *("--allowed-origins", "http://elsewhere.example", "--playground-port", "0"),
    )
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/health")
        tab = open_tab(backend_url=f"http://127.0.0.1:{port}")
        tab.open(unique_user("refused"))
        tab.expect("#banner").to_contain_text(
            f"The chat server at http://127.0.0.1:{port} answers but does not allow this page ({tab.static_server})"
        )
        tab.expect("#banner").to_contain_text("--allowed-origins")
        tab.shot("22-backend-refuses-the-page")
    finally:
        stop(process)


def test_the_message_box_counts_towards_the_limit(open_tab: Callable[..., ChatPage]) -> None:
    tab = open_tab()
    tab.open(unique_user("limit"))
    tab.expect("#prompt").to_have_attribute("maxlength", str(MAX_MESSAGE_CHARACTERS))
    tab.page.fill("#prompt", "x" * 100)
    tab.expect("#prompt-counter").to_be_hidden()
    tab.page.fill("#prompt", "x" * 19_000)
    tab.expect("#prompt-counter").to_have_text("19,000 / 20,000 characters")
    tab.page.fill("#prompt", "x" * (MAX_MESSAGE_CHARACTERS + 50))  # the box takes no more than the API does
    tab.expect("#prompt-counter").to_have_text("20,000 / 20,000 characters: the limit")
    tab.expect("#prompt-counter").to_have_class(re.compile(r"\bfull\b"))
