// A small Markdown renderer for chat answers that escapes by default. Plain JavaScript, no build step.
//
// ChatMarkdown.render(text) returns a DocumentFragment built with createElement and textContent
// only: nothing from the text is ever parsed as HTML, so raw HTML such as <img onerror=...> or
// <script> shows as the characters it is. Supported:
//
//   # headings (1 to 6 #)          - unordered, 1. ordered lists (nested by indentation)
//   ```lang fenced code```          `inline code`
//   **strong** __strong__           *emphasis* _emphasis_ (not inside words: snake_case stays)
//   [text](https://...)             <https://...> and bare https://... addresses
//   backslash escapes (\*)          single line breaks kept as line breaks
//
// Links are made only for http:, https: and mailto: addresses (ChatMarkdown.safeHref), and open in
// a new tab with rel="noopener noreferrer". Any other link, e.g. javascript:, stays plain text,
// as does everything this list does not name (tables, images, block quotes, HTML).
//
// Rendering takes time linear in the length of the text, whatever the text (a model's answer can be
// made to hold anything, and the page renders it on every frame while it streams): lines are
// recognised by scanning them (no regular expression here repeats a pattern next to another that
// can match the same characters), blank lines are passed over once, code spans and link brackets
// are paired in one pass over a paragraph, a search for a closing emphasis delimiter that failed
// is never repeated, and bare addresses are at most 2048 characters.
"use strict";

(function (global) {
  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const MAX_DEPTH = 16;
  const FENCE_OPENING = /^ {0,3}(?:`{3,}|~{3,})/;
  const HEADING_OPENING = /^ {0,3}#{1,6}(?=[ \t]|$)/;
  const LIST_MARKER = /[-*+]|\d{1,9}[.)]/y; // sticky: matched at lastIndex only
  const LANGUAGE = /^[\w+#.-]{1,32}$/;
  const PUNCTUATION = /[!-/:-@[-`{-~]/;
  const WORD_CHARACTER = /[\p{L}\p{N}]/u;
  const MAX_LABEL = 1000;
  const MAX_ADDRESS = 2048;
  const BARE_URL = new RegExp(`(?:https?://|mailto:)[^\\s<>"]{1,${MAX_ADDRESS}}`, "iy"); // sticky
  const TRAILING_PUNCTUATION = ".,:;!?'\")]";

  /** The normalised address if `raw` is an absolute http:, https: or mailto: URL, else null. */
  function safeHref(raw) {
    if (typeof raw !== "string") return null;
    const text = raw.trim();
    if (!text || /[\s\u0000-\u001f\u007f]/.test(text)) return null;
    let url;
    try {
      url = new URL(text); // no base: relative addresses throw
    } catch (_) {
      return null;
    }
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  }

  function element(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function link(href, content) {
    const anchor = element("a");
    anchor.setAttribute("href", href);
    anchor.setAttribute("target", "_blank");
    anchor.setAttribute("rel", "noopener noreferrer");
    anchor.append(content);
    return anchor;
  }

  function indentWidth(whitespace) {
    return whitespace.replace(/\t/g, "    ").length;
  }

  const isBlank = (character) => character === " " || character === "\t";

  /** `text` without the spaces and tabs at its start and end (String.trim also takes other characters). */
  function trimBlanks(text) {
    let start = 0;
    let end = text.length;
    while (start < end && isBlank(text[start])) start += 1;
    while (end > start && isBlank(text[end - 1])) end -= 1;
    return text.slice(start, end);
  }

  // -- lines ---------------------------------------------------------------------------------------

  /** An opening code fence: {marker, language}, or null. */
  function parseFence(line) {
    const opening = FENCE_OPENING.exec(line);
    if (!opening) return null;
    const marker = opening[0].trimStart();
    const info = line.slice(opening[0].length);
    if (marker[0] === "`" && info.includes("`")) return null;
    const words = info.trim();
    const space = words.search(/\s/);
    return { marker, language: space === -1 ? words : words.slice(0, space) };
  }

  /** Whether `line` closes a fence opened with `marker` (the same character, at least as many). */
  function closesFence(line, marker) {
    const candidate = line.trim();
    if (candidate.length < marker.length) return false;
    for (const character of candidate) if (character !== marker[0]) return false;
    return true;
  }

  /** A heading: {level, text}, or null. A closing run of # (after a space or tab) is not part of the text. */
  function parseHeading(line) {
    const opening = HEADING_OPENING.exec(line);
    if (!opening) return null;
    const level = opening[0].length - opening[0].indexOf("#");
    let text = trimBlanks(line.slice(opening[0].length));
    let end = text.length;
    while (end > 0 && text[end - 1] === "#") end -= 1;
    if (end === 0) text = "";
    else if (end < text.length && isBlank(text[end - 1])) text = trimBlanks(text.slice(0, end));
    return { level, text };
  }

  /** A list item: {indent, marker, text}, or null. */
  function parseListItem(line) {
    let at = 0;
    while (at < line.length && isBlank(line[at])) at += 1;
    LIST_MARKER.lastIndex = at;
    const marker = LIST_MARKER.exec(line);
    if (!marker) return null;
    const after = at + marker[0].length;
    if (after < line.length && !isBlank(line[after])) return null;
    return { indent: line.slice(0, at), marker: marker[0], text: trimBlanks(line.slice(after)) };
  }

  // -- inline ------------------------------------------------------------------------------------

  /** One line or paragraph of inline Markdown, as a DocumentFragment. */
  function inline(text, depth, allowLinks) {
    const nodes = document.createDocumentFragment(); // appended to one by one: a spread of many nodes overflows
    let buffer = "";
    const flush = () => {
      if (buffer) nodes.append(buffer);
      buffer = "";
    };
    // Where a search for a closing delimiter found none: a later one cannot find any either.
    const noCloserFrom = new Map();
    let codeRuns = null; // backtick runs by length: {starts, next}, built on the first backtick
    let pairs = null; // where each [ and ( closes, built on the first [

    const findCloser = (delimiter, from, isValid) => {
      const failedFrom = noCloserFrom.get(delimiter);
      if (failedFrom !== undefined && from >= failedFrom) return -1;
      let at = text.indexOf(delimiter, from);
      while (at !== -1 && !isValid(at)) at = text.indexOf(delimiter, at + 1);
      if (at === -1) noCloserFrom.set(delimiter, from);
      return at;
    };

    let i = 0;
    while (i < text.length) {
      const c = text[i];

      if (c === "\\" && i + 1 < text.length && PUNCTUATION.test(text[i + 1])) {
        buffer += text[i + 1];
        i += 2;
        continue;
      }

      if (c === "`") {
        let run = 1;
        while (text[i + run] === "`") run += 1;
        const fence = "`".repeat(run);
        codeRuns = codeRuns || backtickRuns(text);
        const close = nextRun(codeRuns, run, i + run); // a run of exactly as many backticks closes the span
        if (close === -1) {
          buffer += fence;
          i += run;
          continue;
        }
        let code = text.slice(i + run, close);
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
        flush();
        const node = element("code");
        node.textContent = code;
        nodes.append(node);
        i = close + run;
        continue;
      }

      if (allowLinks && c === "[") {
        pairs = pairs || matchingPairs(text);
        const parsed = parseLink(text, i, pairs);
        if (parsed) {
          flush();
          const href = safeHref(parsed.url);
          nodes.append(href ? link(href, inline(parsed.label, depth + 1, false)) : text.slice(i, parsed.end));
          i = parsed.end;
          continue;
        }
      }

      if (allowLinks && c === "<" && /^(?:https?:|mailto:)/i.test(text.slice(i + 1, i + 8))) {
        const close = text.slice(i + 1, i + 2 + MAX_ADDRESS).indexOf(">");
        const address = close === -1 ? "" : text.slice(i + 1, i + 1 + close);
        const href = safeHref(address);
        if (href) {
          flush();
          nodes.append(link(href, address));
          i += close + 2;
          continue;
        }
      }

      if (allowLinks && "hHmM".includes(c) && !WORD_CHARACTER.test(text[i - 1] || "")) {
        BARE_URL.lastIndex = i;
        const match = BARE_URL.exec(text);
        if (match) {
          let end = match[0].length;
          while (end > 0 && TRAILING_PUNCTUATION.includes(match[0][end - 1])) end -= 1;
          const address = match[0].slice(0, end);
          const href = safeHref(address);
          flush();
          // Not an address after all: the whole run is text (never searched again from inside it).
          nodes.append(href ? link(href, address) : address);
          i += address.length;
          continue;
        }
      }

      if ((c === "*" || c === "_") && depth < MAX_DEPTH) {
        const double = text[i + 1] === c;
        const width = double ? 2 : 1;
        const delimiter = c.repeat(width);
        const next = text[i + width];
        const opens =
          next !== undefined &&
          !/\s/.test(next) &&
          next !== c &&
          (c === "*" || !WORD_CHARACTER.test(text[i - 1] || ""));
        if (opens) {
          const close = findCloser(
            delimiter,
            i + width + 1,
            (at) =>
              !/\s/.test(text[at - 1]) &&
              text[at + width] !== c &&
              text[at - 1] !== c &&
              (c === "*" || !WORD_CHARACTER.test(text[at + width] || "")),
          );
          if (close !== -1) {
            flush();
            const node = element(double ? "strong" : "em");
            node.append(inline(text.slice(i + width, close), depth + 1, allowLinks));
            nodes.append(node);
            i = close + width;
            continue;
          }
        }
        buffer += delimiter;
        i += width;
        continue;
      }

      buffer += c;
      i += 1;
    }
    flush();
    return nodes;
  }

  /** `[label](url "title")` starting at `start`: {label, url, end}, or null. `pairs`: matchingPairs(text). */
  function parseLink(text, start, pairs) {
    const labelEnd = pairs.brackets.get(start);
    if (labelEnd === undefined || labelEnd - start >= MAX_LABEL || text[labelEnd + 1] !== "(") return null;
    const addressEnd = pairs.parens.get(labelEnd + 1);
    if (addressEnd === undefined || addressEnd - (labelEnd + 2) >= MAX_ADDRESS || labelEnd === start + 1) return null;
    const url = linkAddress(text.slice(labelEnd + 2, addressEnd).trim());
    return { label: text.slice(start + 1, labelEnd), url, end: addressEnd + 1 };
  }

  /** Where each [ (a backslash escapes the character after it) and each ( of `text` is closed: one pass each. */
  function matchingPairs(text) {
    const pairs = { brackets: new Map(), parens: new Map() };
    const open = [];
    for (let i = 0; i < text.length; i += 1) {
      if (text[i] === "\\") i += 1;
      else if (text[i] === "[") open.push(i);
      else if (text[i] === "]" && open.length) pairs.brackets.set(open.pop(), i);
    }
    open.length = 0;
    for (let i = 0; i < text.length; i += 1) {
      if (text[i] === "(") open.push(i);
      else if (text[i] === ")" && open.length) pairs.parens.set(open.pop(), i);
    }
    return pairs;
  }

  /** The starts of the runs of backticks in `text`, by run length, each list with a cursor (searches go forward). */
  function backtickRuns(text) {
    const runs = new Map();
    let at = text.indexOf("`");
    while (at !== -1) {
      let end = at;
      while (text[end] === "`") end += 1;
      if (!runs.has(end - at)) runs.set(end - at, { starts: [], next: 0 });
      runs.get(end - at).starts.push(at);
      at = text.indexOf("`", end);
    }
    return runs;
  }

  /** Where the first run of exactly `length` backticks at or after `from` starts, or -1. */
  function nextRun(runs, length, from) {
    const entry = runs.get(length);
    if (!entry) return -1;
    while (entry.next < entry.starts.length && entry.starts[entry.next] < from) entry.next += 1;
    return entry.next < entry.starts.length ? entry.starts[entry.next] : -1;
  }

  /** The address of a link target: without a "title" or 'title' after it, without <angle brackets>. */
  function linkAddress(target) {
    let address = target;
    const quote = address[address.length - 1];
    if (quote === '"' || quote === "'") {
      const opening = address.lastIndexOf(quote, address.length - 2);
      if (opening > 0 && /\s/.test(address[opening - 1])) address = address.slice(0, opening).trimEnd();
    }
    if (address.startsWith("<") && address.endsWith(">")) address = address.slice(1, -1);
    return address;
  }

  function appendLines(parent, lines) {
    lines.forEach((line, index) => {
      if (index > 0) parent.append(element("br"));
      parent.append(inline(line, 0, true));
    });
  }

  // -- blocks ------------------------------------------------------------------------------------

  /** Render `source` as a DocumentFragment (see the header of this file). */
  function render(source) {
    const fragment = document.createDocumentFragment();
    const lines = String(source ?? "")
      .replace(/\r\n?/g, "\n")
      .split("\n");
    let paragraph = [];
    let lists = []; // open lists, outermost first: {indent, node, ordered, item}

    const closeParagraph = () => {
      if (!paragraph.length) return;
      const node = element("p");
      appendLines(node, paragraph);
      fragment.append(node);
      paragraph = [];
    };
    const closeLists = () => {
      lists = [];
    };

    let i = 0;
    while (i < lines.length) {
      const line = lines[i];

      const fence = parseFence(line);
      if (fence) {
        closeParagraph();
        closeLists();
        const body = [];
        i += 1;
        while (i < lines.length && !closesFence(lines[i], fence.marker)) {
          body.push(lines[i]);
          i += 1;
        }
        i += 1; // the closing fence (or the end of an answer still streaming)
        const pre = element("pre");
        const code = element("code");
        if (LANGUAGE.test(fence.language)) code.className = `language-${fence.language}`;
        code.textContent = body.join("\n");
        pre.append(code);
        fragment.append(pre);
        continue;
      }

      const heading = parseHeading(line);
      if (heading) {
        closeParagraph();
        closeLists();
        const node = element(`h${heading.level}`);
        node.append(inline(heading.text, 0, true));
        fragment.append(node);
        i += 1;
        continue;
      }

      const item = parseListItem(line);
      if (item && (lists.length || !paragraph.length || item.indent.length === 0)) {
        closeParagraph();
        const indent = indentWidth(item.indent);
        const ordered = /\d/.test(item.marker);
        while (lists.length && lists[lists.length - 1].indent > indent) lists.pop();
        let current = lists[lists.length - 1];
        if (current && current.indent === indent && current.ordered !== ordered) {
          lists.pop();
          current = lists[lists.length - 1];
        }
        if (!current || current.indent < indent) {
          const node = element(ordered ? "ol" : "ul");
          if (ordered) {
            const start = parseInt(item.marker, 10);
            if (start !== 1) node.setAttribute("start", String(start));
          }
          if (current) current.item.append(node);
          else fragment.append(node);
          current = { indent, node, ordered, item: null };
          lists.push(current);
        }
        const li = element("li");
        li.append(inline(item.text, 0, true));
        current.node.append(li);
        current.item = li;
        i += 1;
        continue;
      }

      if (!line.trim()) {
        closeParagraph();
        // Blank lines end the lists unless the line after them goes on with one: passed over once.
        let next = i + 1;
        while (next < lines.length && !lines[next].trim()) next += 1;
        if (next === lines.length || !parseListItem(lines[next])) closeLists();
        i = next;
        continue;
      }

      const content = trimBlanks(line);
      if (lists.length && isBlank(line[0]) && content && !/\s/.test(content[0])) {
        // An indented line goes on with the last list item.
        const last = lists[lists.length - 1].item;
        last.append(element("br"), inline(content, 0, true));
        i += 1;
        continue;
      }

      closeLists();
      paragraph.push(line);
      i += 1;
    }
    closeParagraph();
    return fragment;
  }

  global.ChatMarkdown = Object.freeze({ render, safeHref });
})(window);
