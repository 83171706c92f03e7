"""The playground's Markdown renderer (examples/playground/chat/markdown.js), unit-tested inside real Chromium.

Each case loads nothing but markdown.js into a blank page and compares what ``ChatMarkdown.render``
builds (serialised by the browser) with the expected HTML. The XSS cases also check that no
element or attribute outside the renderer's small allow-list ever appears, that no script runs and
no dialog opens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from chat_api import MAX_MESSAGE_CHARACTERS
from chromium import PLAYGROUND, chromium, needs_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = needs_chromium

LINK = 'target="_blank" rel="noopener noreferrer"'

RENDERED = [
    # paragraphs and line breaks
    ("plain text", "<p>plain text</p>"),
    ("one\ntwo", "<p>one<br>two</p>"),
    ("one\n\ntwo", "<p>one</p><p>two</p>"),
    ("", ""),
    # headings
    ("# Title", "<h1>Title</h1>"),
    ("### Three ###", "<h3>Three</h3>"),
    ("###### six", "<h6>six</h6>"),
    ("####### seven", "<p>####### seven</p>"),
    ("#hashtag", "<p>#hashtag</p>"),
    ("# **bold** title", "<h1><strong>bold</strong> title</h1>"),
    # emphasis
    ("**strong** and __strong__", "<p><strong>strong</strong> and <strong>strong</strong></p>"),
    ("*em* and _em_", "<p><em>em</em> and <em>em</em></p>"),
    ("*a **b** c*", "<p><em>a <strong>b</strong> c</em></p>"),
    ("snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"),
    ("a*b*c", "<p>a<em>b</em>c</p>"),
    ("** not strong **", "<p>** not strong **</p>"),
    ("**unclosed", "<p>**unclosed</p>"),
    ("\\*escaped\\*", "<p>*escaped*</p>"),
    # code
    ("use `pip install`", "<p>use <code>pip install</code></p>"),
    ("``code with ` inside``", "<p><code>code with ` inside</code></p>"),
    ("`**not bold**`", "<p><code>**not bold**</code></p>"),
    (
        "```python\nprint('<b>hi</b>')\n```",
        "<pre><code class=\"language-python\">print('&lt;b&gt;hi&lt;/b&gt;')</code></pre>",
    ),
    ("```\nline 1\n\nline 3\n```", "<pre><code>line 1\n\nline 3</code></pre>"),
    ("```js\nstill streaming", '<pre><code class="language-js">still streaming</code></pre>'),
    ("~~~\n# not a heading\n~~~", "<pre><code># not a heading</code></pre>"),
    ('```"><img src=x>\nx\n```', "<pre><code>x</code></pre>"),
    # lists
    ("- a\n- b", "<ul><li>a</li><li>b</li></ul>"),
    ("* a\n+ b", "<ul><li>a</li><li>b</li></ul>"),
    ("1. one\n2. two", "<ol><li>one</li><li>two</li></ol>"),
    ("3. three\n4. four", '<ol start="3"><li>three</li><li>four</li></ol>'),
    ("- a\n  - nested\n- b", "<ul><li>a<ul><li>nested</li></ul></li><li>b</li></ul>"),
    ("- a\n\n- b", "<ul><li>a</li><li>b</li></ul>"),
    ("- a\n  more of a", "<ul><li>a<br>more of a</li></ul>"),
    ("- a\n\nafter", "<ul><li>a</li></ul><p>after</p>"),
    ("text\n- item", "<p>text</p><ul><li>item</li></ul>"),
    ("- **bold** item", "<ul><li><strong>bold</strong> item</li></ul>"),
    # links
    ("[docs](https://example.com/a)", f'<p><a href="https://example.com/a" {LINK}>docs</a></p>'),
    ("[mail](mailto:a@example.com)", f'<p><a href="mailto:a@example.com" {LINK}>mail</a></p>'),
    ('[t](https://example.com "title")', f'<p><a href="https://example.com/" {LINK}>t</a></p>'),
    ("[w](https://en.wikipedia.org/wiki/A_(b))", f'<p><a href="https://en.wikipedia.org/wiki/A_(b)" {LINK}>w</a></p>'),
    ("[**b**](https://x.example)", f'<p><a href="https://x.example/" {LINK}><strong>b</strong></a></p>'),
    ("see https://example.com/x.", f'<p>see <a href="https://example.com/x" {LINK}>https://example.com/x</a>.</p>'),
    ("<https://example.com>", f'<p><a href="https://example.com/" {LINK}>https://example.com</a></p>'),
    ("[relative](/etc/passwd)", "<p>[relative](/etc/passwd)</p>"),
    ("[scheme-relative](//evil.example)", "<p>[scheme-relative](//evil.example)</p>"),
    ("[ftp](ftp://example.com)", "<p>[ftp](ftp://example.com)</p>"),
    ("[]()", "<p>[]()</p>"),
]

XSS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "<svg onload=alert(1)>",
    "<a href=javascript:alert(1)>x</a>",
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "[click]( javascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](data:text/html,<script>alert(1)</script>)",
    "[click](vbscript:msgbox(1))",
    "<javascript:alert(1)>",
    "javascript:alert(1)",
    "![image](https://example.com/x.png)",
    "![x](javascript:alert(1))",
    '<iframe src="javascript:alert(1)"></iframe>',
    "**<img src=x onerror=alert(1)>**",
    "`<img src=x onerror=alert(1)>`",
    "- <img src=x onerror=alert(1)>",
    "# <img src=x onerror=alert(1)>",
    "```\n</code></pre><img src=x onerror=alert(1)>\n```",
    '[x](https://example.com" onmouseover="alert(1))',
    "[<img src=x onerror=alert(1)>](https://example.com)",
    "<style>body{display:none}</style>",
    "&lt;img src=x onerror=alert(1)&gt;",
]
ALLOWED_TAGS = {"P", "BR", "H1", "H2", "H3", "H4", "H5", "H6", "UL", "OL", "LI", "PRE", "CODE", "STRONG", "EM", "A"}
ALLOWED_ATTRIBUTES = {"href", "target", "rel", "class", "start"}

RENDER = """(source) => {
    const box = document.createElement('div');
    box.append(ChatMarkdown.render(source));
    return box.innerHTML;
}"""

INSPECT = """(source) => {
    const box = document.createElement('div');
    box.append(ChatMarkdown.render(source));
    document.getElementById('out').append(box);  // attached, so an event handler or a script would run now
    const elements = [...box.querySelectorAll('*')];
    return {
        tags: elements.map((e) => e.tagName),
        attributes: elements.flatMap((e) => [...e.attributes].map((a) => a.name)),
        hrefs: [...box.querySelectorAll('a')].map((a) => a.getAttribute('href')),
        text: box.textContent,
    };
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def renderer_page(browser: Browser, problems: list[str]) -> Page:
    """A blank page with only markdown.js loaded; ``problems`` collects dialogs and page errors."""
    page = browser.new_page()
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.set_content('<!doctype html><html><body><div id="out"></div></body></html>')
    page.add_script_tag(path=str(PLAYGROUND / "markdown.js"))
    page.evaluate("() => { window.alert = () => { throw new Error('alert called'); }; }")
    return page


@pytest.fixture(scope="module")
def renderer(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """One renderer page for the module's cases, and what went wrong in it."""
    problems: list[str] = []
    page = renderer_page(browser, problems)
    yield page, problems
    page.close()


@pytest.mark.parametrize(("source", "html"), RENDERED, ids=[repr(source)[:40] for source, _ in RENDERED])
def test_renders(renderer: tuple[Page, list[str]], source: str, html: str) -> None:
    page, problems = renderer
    assert page.evaluate(RENDER, source) == html
    assert problems == []


@pytest.mark.parametrize("payload", XSS, ids=[repr(payload)[:40] for payload in XSS])
def test_markup_and_unsafe_links_stay_text(renderer: tuple[Page, list[str]], payload: str) -> None:
    page, problems = renderer
    found: dict[str, Any] = page.evaluate(INSPECT, payload)
    assert set(found["tags"]) <= ALLOWED_TAGS
    assert set(found["attributes"]) <= ALLOWED_ATTRIBUTES
    assert all(href.startswith(("https:", "http:", "mailto:")) for href in found["hrefs"])
    assert "IMG" not in found["tags"]
    assert page.locator("#out :is(img, script, iframe, svg, style)").count() == 0
    # Whatever was not rendered as Markdown is still there to read, as text.
    for word in ("img", "script", "javascript", "iframe", "style", "svg", "vbscript"):
        if word in payload.lower() and "](" not in payload:
            assert word in found["text"].lower()
    assert problems == []


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("https://example.com", "https://example.com/"),
        ("  http://example.com/a?b=c#d ", "http://example.com/a?b=c#d"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        ("data:text/html,hi", None),
        ("file:///etc/passwd", None),
        ("/relative", None),
        ("//scheme-relative.example", None),
        ("https://exa mple.com", None),
        ("", None),
    ],
)
def test_safe_href(renderer: tuple[Page, list[str]], address: str, expected: str | None) -> None:
    page, _ = renderer
    assert page.evaluate("(address) => ChatMarkdown.safeHref(address)", address) == expected


def test_unclosed_delimiters_by_the_thousand_render_as_text(renderer: tuple[Page, list[str]]) -> None:
    """Each unclosed delimiter is looked for at most once per kind, so a long odd answer renders (as text)."""
    page, _ = renderer
    sizes = page.evaluate(
        """() => ['*a ', '[', '<https:', 'a_', '**b ', 'h ', '[a]('].map(
            (unit) => ChatMarkdown.render(unit.repeat(20000)).textContent.length)"""
    )
    assert sizes == [len(unit) * 20000 for unit in ("*a ", "[", "<https:", "a_", "**b ", "h ", "[a](")]


# -- adversarial answers ------------------------------------------------------------------------------------

GUARD_MS = 5_000
"""How long one adversarial case may take before it counts as a hang: a hang detector, not a performance
claim (each case renders in milliseconds; the backtracking renderer this replaces needed minutes for some)."""


def largest(prefix: str, unit: str, suffix: str = "") -> str:
    """``prefix``, ``unit`` repeated, ``suffix``: exactly as long as the longest message the API accepts."""
    room = MAX_MESSAGE_CHARACTERS - len(prefix) - len(suffix)
    return prefix + (unit * (room // len(unit) + 1))[:room] + suffix


def growing_backtick_runs() -> str:
    runs, length = [], 1
    while sum(map(len, runs)) + length + 1 <= MAX_MESSAGE_CHARACTERS:
        runs.append("`" * length + " ")
        length += 1
    return largest("".join(runs), "a")


ADVERSARIAL = {
    "heading: # then tabs then U+2028": largest("#", "\t", "\u2028"),
    "heading: # then spaces then U+2029": largest("#", " ", "\u2029"),
    "heading: # then blanks then a closing #x": largest("# ", " \t", "#x"),
    "headings: lines of # and tabs": largest("", "#" + "\t" * 50 + "\u2028\n"),
    "list item: - then spaces then U+2028": largest("-", " ", "\u2028"),
    "list item: 1. then tabs then U+2028": largest("1.", "\t", "\u2028"),
    "list item: indentation, no marker": largest("", " ", "x"),
    "continuation lines of blanks then U+2028": largest("- a\n", " " * 30 + "\u2028\n"),
    "blank lines between paragraphs": largest("a", "\n", "b"),
    "blank lines between list items": largest("- a", "\n", "- b"),
    "lines of spaces between list items": largest("- a\n", " \n", "- b"),
    "fence: backticks, spaces, a backtick": largest("```", " ", "`"),
    "fence: an info string of words": largest("```", " a", "`"),
    "fence: never closed": largest("```\n", "x\n"),
    "emphasis: *a": largest("", "*a"),
    "emphasis: _a_": largest("", "_a_ "),
    "emphasis: **a*": largest("", "**a*"),
    "emphasis: stars only": largest("", "*"),
    "code spans: runs of growing length": growing_backtick_runs(),
    "links: open brackets": largest("", "["),
    "links: labels with unclosed addresses": largest("", "[a]("),
    "links: a target of spaces": largest("[a](https://x.example", " ", ")"),
    "links: unclosed angle addresses": largest("", "<https:"),
    "bare address: trailing dots": largest("http://a", ".", "x"),
    "bare addresses: unsafe ones": largest("", "https://x/h\u0001"),
    "backslash escapes": largest("", "\\*"),
}

RENDER_LATER = """(source) => {
    window.rendered = null;
    setTimeout(() => {
        const box = document.createElement('div');
        box.append(ChatMarkdown.render(source));
        window.rendered = {text: box.textContent.length, elements: box.querySelectorAll('*').length};
    }, 0);
}"""


@pytest.mark.parametrize("source", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_an_adversarial_answer_of_the_largest_size_renders(browser: Browser, source: str) -> None:
    """Every line kind, delimiter and address scan on inputs built to make a backtracking renderer hang.

    Each case runs on a page of its own, so a hang fails that case only (the page is closed after it).
    """
    assert len(source) == MAX_MESSAGE_CHARACTERS
    problems: list[str] = []
    page = renderer_page(browser, problems)
    try:
        page.evaluate(RENDER_LATER, source)
        page.wait_for_function("() => window.rendered !== null", timeout=GUARD_MS)
        rendered = page.evaluate("() => window.rendered")
    finally:
        page.close()
    assert 0 < rendered["text"] <= len(source)
    assert problems == []


def test_blank_lines_before_a_list_item_keep_the_list_open(renderer: tuple[Page, list[str]]) -> None:
    """The single pass over blank lines still looks at the line after them."""
    page, _ = renderer
    html = page.evaluate(RENDER, "- a" + "\n" * 5000 + "- b\n\n\nafter")
    assert html == "<ul><li>a</li><li>b</li></ul><p>after</p>"


def test_an_answer_of_a_quarter_of_a_million_inline_nodes_renders(renderer: tuple[Page, list[str]]) -> None:
    """Inline nodes are appended one by one: spreading them into one call overflows the stack past ~100,000."""
    page, problems = renderer
    emphasised = page.evaluate(
        """() => {
            const box = document.createElement('div');
            box.append(ChatMarkdown.render('*a'.repeat(250000)));
            return box.querySelectorAll('em').length;
        }"""
    )
    assert emphasised == 125_000
    assert problems == []
