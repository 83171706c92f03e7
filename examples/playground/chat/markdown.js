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
"use strict";

(function (global) {
  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const MAX_DEPTH = 16;
  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const LIST_ITEM = /^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
  const LANGUAGE = /^[\w+#.-]{1,32}$/;
  const PUNCTUATION = /[!-/:-@[-`{-~]/;
  const WORD_CHARACTER = /[\p{L}\p{N}]/u;
  const BARE_URL = /(?:https?:\/\/|mailto:)[^\s<>"]+/iy; // sticky: matched at lastIndex only
  const MAX_LABEL = 1000;
  const MAX_ADDRESS = 2048;

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

  function link(href, children) {
    const anchor = element("a");
    anchor.setAttribute("href", href);
    anchor.setAttribute("target", "_blank");
    anchor.setAttribute("rel", "noopener noreferrer");
    anchor.append(...children);
    return anchor;
  }

  function indentWidth(whitespace) {
    return whitespace.replace(/\t/g, "    ").length;
  }

  // -- inline ------------------------------------------------------------------------------------

  /** The nodes of one line or paragraph of inline Markdown. */
  function inline(text, depth, allowLinks) {
    const nodes = [];
    let buffer = "";
    const flush = () => {
      if (buffer) nodes.push(document.createTextNode(buffer));
      buffer = "";
    };
    // Where a search for a closing delimiter found none: a later one cannot find any either.
    const noCloserFrom = new Map();

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
        const close = findCloser(fence, i + run, (at) => text[at - 1] !== "`" && text[at + run] !== "`");
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
        nodes.push(node);
        i = close + run;
        continue;
      }

      if (allowLinks && c === "[") {
        const parsed = parseLink(text, i);
        if (parsed) {
          flush();
          const href = safeHref(parsed.url);
          if (href) nodes.push(link(href, inline(parsed.label, depth + 1, false)));
          else nodes.push(document.createTextNode(text.slice(i, parsed.end)));
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
          nodes.push(link(href, [document.createTextNode(address)]));
          i += close + 2;
          continue;
        }
      }

      if (allowLinks && "hHmM".includes(c) && !WORD_CHARACTER.test(text[i - 1] || "")) {
        BARE_URL.lastIndex = i;
        const match = BARE_URL.exec(text);
        if (match) {
          const address = match[0].replace(/[.,:;!?'")\]]+$/, "");
          const href = safeHref(address);
          if (href) {
            flush();
            nodes.push(link(href, [document.createTextNode(address)]));
            i += address.length;
            continue;
          }
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
            node.append(...inline(text.slice(i + width, close), depth + 1, allowLinks));
            nodes.push(node);
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

  /** `[label](url "title")` starting at `start`: {label, url, end}, or null. */
  function parseLink(text, start) {
    let depth = 0;
    let i = start;
    const labelEnd = Math.min(text.length, start + MAX_LABEL);
    for (; i < labelEnd; i += 1) {
      if (text[i] === "\\") {
        i += 1;
      } else if (text[i] === "[") {
        depth += 1;
      } else if (text[i] === "]") {
        depth -= 1;
        if (depth === 0) break;
      }
    }
    if (i >= labelEnd || text[i] !== "]" || text[i + 1] !== "(") return null;
    const label = text.slice(start + 1, i);
    let j = i + 2;
    let parens = 0;
    const addressEnd = Math.min(text.length, j + MAX_ADDRESS);
    for (; j < addressEnd; j += 1) {
      if (text[j] === "(") parens += 1;
      else if (text[j] === ")") {
        if (parens === 0) break;
        parens -= 1;
      }
    }
    if (j >= addressEnd || !label) return null;
    const target = text.slice(i + 2, j).trim();
    const url = target.replace(/\s+(?:"[^"]*"|'[^']*')$/, "").replace(/^<(.*)>$/, "$1");
    return { label, url, end: j + 1 };
  }

  function appendLines(parent, lines) {
    lines.forEach((line, index) => {
      if (index > 0) parent.append(element("br"));
      parent.append(...inline(line, 0, true));
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

      const fence = FENCE.exec(line);
      if (fence) {
        closeParagraph();
        closeLists();
        const marker = fence[1];
        const body = [];
        i += 1;
        while (i < lines.length) {
          const candidate = lines[i].trim();
          if (candidate.startsWith(marker[0].repeat(marker.length)) && /^(`+|~+)$/.test(candidate)) break;
          body.push(lines[i]);
          i += 1;
        }
        i += 1; // the closing fence (or the end of an answer still streaming)
        const pre = element("pre");
        const code = element("code");
        if (LANGUAGE.test(fence[2])) code.className = `language-${fence[2]}`;
        code.textContent = body.join("\n");
        pre.append(code);
        fragment.append(pre);
        continue;
      }

      const heading = HEADING.exec(line);
      if (heading) {
        closeParagraph();
        closeLists();
        const node = element(`h${heading[1].length}`);
        node.append(...inline(heading[2] || "", 0, true));
        fragment.append(node);
        i += 1;
        continue;
      }

      const item = LIST_ITEM.exec(line);
      if (item && (lists.length || !paragraph.length || item[1].length === 0)) {
        closeParagraph();
        const indent = indentWidth(item[1]);
        const ordered = /\d/.test(item[2]);
        while (lists.length && lists[lists.length - 1].indent > indent) lists.pop();
        let current = lists[lists.length - 1];
        if (current && current.indent === indent && current.ordered !== ordered) {
          lists.pop();
          current = lists[lists.length - 1];
        }
        if (!current || current.indent < indent) {
          const node = element(ordered ? "ol" : "ul");
          if (ordered) {
            const start = parseInt(item[2], 10);
            if (start !== 1) node.setAttribute("start", String(start));
          }
          if (current) current.item.append(node);
          else fragment.append(node);
          current = { indent, node, ordered, item: null };
          lists.push(current);
        }
        const li = element("li");
        li.append(...inline(item[3] || "", 0, true));
        current.node.append(li);
        current.item = li;
        i += 1;
        continue;
      }

      if (!line.trim()) {
        closeParagraph();
        // A blank line ends the lists unless the next line goes on with one of them.
        const next = lines.slice(i + 1).find((candidate) => candidate.trim());
        if (!next || !LIST_ITEM.test(next)) closeLists();
        i += 1;
        continue;
      }

      if (lists.length && /^[ \t]+\S/.test(line)) {
        // An indented line goes on with the last list item.
        const last = lists[lists.length - 1].item;
        last.append(element("br"), ...inline(line.trim(), 0, true));
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
