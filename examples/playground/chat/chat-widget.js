// Chat playground for examples/example_fastapi_streaming.py. Plain JavaScript, no build step, no CDN.
//
// - The user is chosen on the first visit and kept in localStorage ("chatPlayground.user"); every
//   request carries it in the X-User-Id header, the backend's stand-in for real authentication.
// - The sidebar lists the user's conversations (GET /sessions, newest first, more pages loaded on
//   scroll through next_cursor), opens, renames (PATCH) and deletes (DELETE, after a confirmation).
// - Answers stream in as server-sent events (POST /sessions/{id}/chat/stream, read with fetch) and
//   are rendered as Markdown by markdown.js (escaped by default); tool calls and their results are
//   collapsed <details> blocks. Each turn shows its metrics, restored turns too (from the
//   event_loop_metrics stored on each answer).
// - "Edit" on a user message forks the conversation at the message before it (POST .../fork),
//   opens the copy and sends the edited text there; the original conversation stays as it was.
// - The current conversation is in the address (?session=...), so a reload keeps it; a visit
//   without one reopens the user's last conversation. A conversation deleted meanwhile (another tab,
//   another device) is not re-created by the next message: the page says it no longer exists.
// - Leaving a conversation while its answer streams and coming back shows the answer still arriving.
// - The backend is the port chat-config.js names (examples/playground_server.py; else 8880) on this
//   page's host, or ?backend=... for this visit only: then a notice names it for the whole visit, and
//   nothing learnt during the visit is remembered. When the backend cannot be reached (or refuses
//   this page: CORS) a banner says which and the page polls /health until it answers; a message that
//   could not be sent is marked, with Retry where a retry can succeed.
//
// All user and model text is put into the page with textContent (Markdown through DOM nodes built
// the same way), never innerHTML.
"use strict";

(function () {
  const LEGACY_KEYS = ["chatPlayground.backend", "chatPlayground.sessionId"]; // the old page's sticky settings
  const PAGE_SIZE = 20;
  const MAX_MESSAGE = 20000; // characters: the API's limit (the textarea's maxlength)
  const COUNTER_FROM = 18000; // the counter shows from here on
  const HEALTH_POLL_MS = 2000;
  const USER_PATTERN = /^[A-Za-z0-9._@-]{1,64}$/;

  const $ = (id) => document.getElementById(id);
  const ui = {
    top: $("top"),
    toggleSidebar: $("toggle-sidebar"),
    toggleDetails: $("toggle-details"),
    userButton: $("user-button"),
    userName: $("user-name"),
    backendUrl: $("backend-url"),
    backendNotice: $("backend-notice"),
    backendNoticeText: $("backend-notice-text"),
    backendReset: $("backend-reset"),
    banner: $("banner"),
    bannerText: $("banner-text"),
    bannerRetry: $("banner-retry"),
    sidebar: $("sidebar"),
    newChat: $("new-chat"),
    sessionList: $("session-list"),
    listEnd: $("session-list-end"),
    title: $("conversation-title"),
    exportButton: $("export"),
    messages: $("messages"),
    composer: $("composer"),
    prompt: $("prompt"),
    promptCounter: $("prompt-counter"),
    send: $("send"),
    status: $("status"),
    metadata: $("metadata"),
    metadataForm: $("metadata-form"),
    metadataFields: $("metadata-fields"),
    metadataKey: $("metadata-key"),
    metadataValue: $("metadata-value"),
    stats: $("stats"),
    userDialog: $("user-dialog"),
    userForm: $("user-form"),
    userInput: $("user-input"),
    userCancel: $("user-cancel"),
  };

  // -- configuration: the backend (this visit only), the user ------------------------------------

  const query = new URLSearchParams(window.location.search);
  const backendFromUrl = query.get("backend");
  const DEFAULT_BACKEND = defaultBackend();
  const BACKEND = (backendFromUrl || DEFAULT_BACKEND).replace(/\/+$/, "");
  // Another backend than the default, from the address: it gets the user's messages and user name, so
  // it is named for the whole visit, and nothing learnt from it is kept for later visits.
  const OTHER_BACKEND = BACKEND !== DEFAULT_BACKEND;
  for (const key of LEGACY_KEYS) localStorage.removeItem(key);
  // What the page remembers (the user, their last conversation): for the default backend in
  // localStorage; for another one in this tab's sessionStorage under that backend's name, so that
  // nothing passes between backends and nothing of the visit outlives it.
  const store = OTHER_BACKEND ? window.sessionStorage : window.localStorage;
  const storageKey = (name) => (OTHER_BACKEND ? `chatPlayground@${BACKEND}.${name}` : `chatPlayground.${name}`);
  const STORAGE_USER = storageKey("user");
  const lastSessionKey = (user) => storageKey(`lastSession.${user}`);

  /** This page's host, at the port chat-config.js names (examples/playground_server.py), else 8880. */
  function defaultBackend() {
    const configured = window.CHAT_PLAYGROUND && window.CHAT_PLAYGROUND.backendPort;
    const port = Number.isInteger(configured) && configured > 0 && configured < 65536 ? configured : 8880;
    const protocol = window.location.protocol === "https:" ? "https:" : "http:";
    const host = window.location.hostname || "127.0.0.1";
    return `${protocol}//${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  /** The conversation a load without ?session= reopens. */
  const lastSession = {
    get: () => store.getItem(lastSessionKey(state.user)),
    set: (sessionId) => store.setItem(lastSessionKey(state.user), sessionId),
    forget: () => store.removeItem(lastSessionKey(state.user)),
  };

  const storedUser = store.getItem(STORAGE_USER);
  const state = {
    user: storedUser && USER_PATTERN.test(storedUser) ? storedUser : null,
    sessionId: null, // the conversation shown
    stored: false, // whether it exists on the server (a new chat does not until its first message)
    summaries: new Map(), // session id -> summary from GET /sessions, in list order
    nextCursor: null,
    listLoading: false,
    listGeneration: 0,
    loadSequence: 0,
    panelSequence: 0,
    loadFailed: false,
    firstUserText: null,
    busy: false,
    live: null, // the turn streaming now: {sessionId, text, user, assistant, messageId}
    unsent: [], // {sessionId, bubble}: messages that never reached the server, shown with Retry
    reachable: true,
    healthTimer: null,
  };

  // -- small helpers (textContent only) ------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(label, className, onClick, title) {
    const node = el("button", className, label);
    node.type = "button";
    if (title) node.title = title;
    node.addEventListener("click", onClick);
    return node;
  }

  const enc = encodeURIComponent;

  /** `text` cut to `max` characters, for a status line. */
  const excerpt = (text, max = 40) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

  function setStatus(text, isError) {
    ui.status.textContent = text || "";
    ui.status.classList.toggle("error", Boolean(isError));
  }

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function newSessionId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return `web-${window.crypto.randomUUID()}`;
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  function relativeTime(iso) {
    const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 45) return "just now";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.round(minutes / 60);
    if (hours < 24) return `${hours} h ago`;
    const days = Math.round(hours / 24);
    if (days === 1) return "yesterday";
    if (days < 7) return `${days} days ago`;
    return new Date(iso).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
  }

  function formatMs(ms) {
    if (ms === undefined || ms === null) return null;
    return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
  }

  /** Keep the layout below the header and the banner, whatever their height (they wrap on narrow screens). */
  function trackTopHeight() {
    const bars = [ui.top, ui.backendNotice, ui.banner];
    const update = () => {
      const height = bars.reduce((sum, bar) => sum + (bar.hidden ? 0 : bar.offsetHeight), 0);
      document.documentElement.style.setProperty("--top-height", `${height}px`);
    };
    for (const bar of bars) new ResizeObserver(update).observe(bar);
    update();
  }

  // -- the address bar -------------------------------------------------------------------------------

  function pageUrl(sessionId) {
    const params = new URLSearchParams();
    if (backendFromUrl) params.set("backend", backendFromUrl);
    if (sessionId) params.set("session", sessionId);
    const search = params.toString();
    return `${window.location.pathname}${search ? `?${search}` : ""}`;
  }

  function setUrl(sessionId, push) {
    const url = pageUrl(sessionId);
    if (url !== window.location.pathname + window.location.search) {
      window.history[push ? "pushState" : "replaceState"]({ session: sessionId }, "", url);
    }
  }

  // -- talking to the backend -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  class Unreachable extends Error {}

  function detailOf(body, status) {
    return typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
  }

  /** A request as the current user: the JSON body, or the Response itself with `raw`. */
  async function api(path, options = {}) {
    const { raw, ...init } = options;
    const headers = { "X-User-Id": state.user };
    if (init.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(`${BACKEND}${path}`, { ...init, headers });
    } catch (_) {
      backendUnreachable();
      throw new Unreachable(`cannot reach the chat server at ${BACKEND}`);
    }
    backendReachable();
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new ApiError(detailOf(body, response.status), response.status);
    }
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  function backendUnreachable() {
    if (!state.reachable) return;
    state.reachable = false;
    ui.bannerText.textContent = `Cannot reach the chat server at ${BACKEND}. Trying again every few seconds…`;
    ui.banner.hidden = false;
    state.healthTimer = window.setInterval(checkHealth, HEALTH_POLL_MS);
    explainUnreachable();
  }

  /**
   * Down, or refusing this page? A request the browser does not check for CORS (an opaque no-cors
   * request) succeeds whenever the server answers at all; the refused one failed only for CORS.
   */
  async function explainUnreachable() {
    let answers = false;
    try {
      await fetch(`${BACKEND}/health`, { mode: "no-cors", cache: "no-store" });
      answers = true;
    } catch (_) {
      // down, or no such host
    }
    if (state.reachable) return;
    ui.bannerText.textContent = answers
      ? `The chat server at ${BACKEND} answers but does not allow this page (${window.location.origin}): its ` +
        "CORS settings leave it out (start it with --allowed-origins naming this page). Trying again every few seconds…"
      : `Cannot reach the chat server at ${BACKEND}. Trying again every few seconds…`;
  }

  function backendReachable() {
    if (state.reachable) return;
    state.reachable = true;
    ui.banner.hidden = true;
    window.clearInterval(state.healthTimer);
    setStatus("the chat server answers again");
    // Load again what could not be loaded while it was away.
    loadSessions();
    if (state.loadFailed) loadConversation();
  }

  async function checkHealth() {
    try {
      const response = await fetch(`${BACKEND}/health`);
      if (response.ok) backendReachable();
    } catch (_) {
      explainUnreachable(); // still away (or still refusing this page); the next poll tries again
    }
  }

  // -- the sidebar: the user's conversations -------------------------------------------------------------

  function addSummaries(sessions) {
    for (const summary of sessions) {
      if (!state.summaries.has(summary.session_id)) state.summaries.set(summary.session_id, summary);
    }
  }

  /** Put `summary` at the top of the list (it was just written: the most recently updated). */
  function putFirst(summary) {
    const others = [...state.summaries.values()].filter((s) => s.session_id !== summary.session_id);
    state.summaries = new Map([summary, ...others].map((s) => [s.session_id, s]));
  }

  async function loadSessions() {
    const generation = ++state.listGeneration;
    state.listLoading = true;
    ui.listEnd.textContent = "Loading your conversations…";
    try {
      const page = await api(`/sessions?limit=${PAGE_SIZE}`);
      if (generation !== state.listGeneration) return;
      state.summaries = new Map();
      addSummaries(page.sessions);
      state.nextCursor = page.next_cursor;
      renderSessionList();
    } catch (error) {
      if (generation !== state.listGeneration) return;
      ui.listEnd.textContent =
        error instanceof Unreachable
          ? "Your conversations appear when the chat server answers."
          : `Could not load your conversations: ${error.message}`;
      return;
    } finally {
      if (generation === state.listGeneration) state.listLoading = false;
    }
    loadMoreIfAtEnd();
  }

  async function loadMore() {
    if (state.listLoading || !state.nextCursor) return;
    const generation = state.listGeneration;
    state.listLoading = true;
    ui.listEnd.textContent = "Loading more…";
    try {
      const page = await api(`/sessions?limit=${PAGE_SIZE}&cursor=${enc(state.nextCursor)}`);
      if (generation !== state.listGeneration) return;
      addSummaries(page.sessions);
      state.nextCursor = page.next_cursor;
      renderSessionList();
    } catch (error) {
      if (generation === state.listGeneration) ui.listEnd.textContent = `Could not load more: ${error.message}`;
      return;
    } finally {
      if (generation === state.listGeneration) state.listLoading = false;
    }
    loadMoreIfAtEnd();
  }

  /** Infinite scroll: the next page once the end of the list is (nearly) in view. */
  function loadMoreIfAtEnd() {
    const list = ui.sidebar;
    if (!state.nextCursor || list.clientHeight === 0) return; // no more, or the drawer is closed
    if (list.scrollTop + list.clientHeight >= list.scrollHeight - 120) loadMore();
  }

  /** After a write: the newest conversation (the one just written) to the top of the list. */
  async function refreshNewest() {
    try {
      const page = await api("/sessions?limit=1");
      if (page.sessions.length) {
        putFirst(page.sessions[0]);
        renderSessionList();
        showTitle();
      }
    } catch (_) {
      // the list stays as it was; the banner or the status says why
    }
  }

  function renderSessionList() {
    const existing = new Map([...ui.sessionList.children].map((li) => [li.dataset.sessionId, li]));
    const items = [];
    for (const summary of state.summaries.values()) {
      let li = existing.get(summary.session_id);
      if (!li) {
        li = el("li", "session");
        li.dataset.sessionId = summary.session_id;
      }
      if (!li.dataset.mode) fillSessionItem(li, summary);
      items.push(li);
    }
    ui.sessionList.replaceChildren(...items);
    ui.listEnd.textContent = state.summaries.size
      ? state.nextCursor
        ? ""
        : "That is all of your conversations."
      : "No conversations yet: your first message starts one.";
    markCurrentInList();
  }

  function fillSessionItem(li, summary) {
    const title = summary.title || "Untitled conversation";
    const open = button("", "open", () => {
      closeDrawer();
      if (summary.session_id !== state.sessionId) openSession(summary.session_id, { push: true });
    });
    const when = el("time", "when", whenText(summary));
    when.dateTime = summary.updated_at;
    when.title = `updated ${new Date(summary.updated_at).toLocaleString()} (a message, a rename or metadata)`;
    open.append(el("span", "title", title), when);
    open.title = title;
    const actions = el("span", "actions");
    actions.append(
      button("Rename", "rename", () => startRename(li, summary), `Rename “${title}”`),
      button("Delete", "delete", () => confirmDelete(li, summary), `Delete “${title}”`),
    );
    li.replaceChildren(open, actions);
  }

  function whenText(summary) {
    const count = summary.message_count;
    return `updated ${relativeTime(summary.updated_at)} · ${count} message${count === 1 ? "" : "s"}`;
  }

  function markCurrentInList() {
    for (const li of ui.sessionList.children) {
      li.setAttribute("aria-current", String(li.dataset.sessionId === state.sessionId));
    }
  }

  function startRename(li, summary) {
    li.dataset.mode = "rename";
    const input = el("input", "rename-input");
    input.value = summary.title || "";
    input.maxLength = 200;
    input.setAttribute("aria-label", "New title");
    li.replaceChildren(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      const title = input.value.trim();
      if (save && title && title !== summary.title) {
        try {
          await api(`/sessions/${enc(summary.session_id)}`, { method: "PATCH", body: JSON.stringify({ title }) });
          summary.title = title;
          setStatus(`renamed to “${excerpt(title)}”`);
          delete li.dataset.mode;
          await refreshNewest();
        } catch (error) {
          setStatus(`rename: ${error.message}`, true);
        }
      }
      delete li.dataset.mode;
      fillSessionItem(li, state.summaries.get(summary.session_id) || summary);
      markCurrentInList();
      showTitle();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  function confirmDelete(li, summary) {
    li.dataset.mode = "confirm";
    const box = el("div", "confirm");
    const cancel = button("Cancel", null, () => {
      delete li.dataset.mode;
      fillSessionItem(li, summary);
      markCurrentInList();
    });
    const remove = button("Delete", "danger", async () => {
      remove.disabled = true;
      try {
        await api(`/sessions/${enc(summary.session_id)}`, { method: "DELETE" });
        state.summaries.delete(summary.session_id);
        li.remove();
        setStatus(`deleted “${summary.title || "Untitled conversation"}”`);
        if (summary.session_id === state.sessionId) newChat({ push: false });
        renderSessionList();
      } catch (error) {
        const running = "a turn is in progress in this conversation; try again when it finishes";
        setStatus(`delete: ${error.status === 409 ? running : error.message}`, true);
        remove.disabled = false;
      }
    });
    box.append(el("p", null, `Delete “${summary.title || "Untitled conversation"}”? This cannot be undone.`), remove, cancel);
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !remove.disabled) {
        event.preventDefault();
        event.stopPropagation(); // closes the question, not the drawer it is in
        cancel.click();
      }
    });
    li.replaceChildren(box);
    cancel.focus();
  }

  function openDrawer() {
    document.body.classList.add("sidebar-open");
    ui.toggleSidebar.setAttribute("aria-expanded", "true");
    loadMoreIfAtEnd();
  }

  function closeDrawer() {
    document.body.classList.remove("sidebar-open");
    ui.toggleSidebar.setAttribute("aria-expanded", "false");
  }

  // -- a conversation ---------------------------------------------------------------------------------

  function showTitle() {
    const summary = state.summaries.get(state.sessionId);
    ui.title.textContent = state.stored ? summary?.title || state.firstUserText || "Conversation" : "New chat";
  }

  function emptyState(lines, className = "empty", action = null) {
    const box = el("div", className);
    for (const line of lines) box.append(el("p", null, line));
    if (action) box.append(action);
    return box;
  }

  function showNewChatHint() {
    ui.messages.replaceChildren(
      emptyState([
        "A new conversation. Say hello: it is stored in MongoDB under your user when you send it.",
        "With the scripted model, start a message with “count” to see a tool call, or mention “markdown”.",
      ]),
    );
  }

  function setComposerEnabled(enabled) {
    ui.prompt.disabled = !enabled;
    ui.send.disabled = !enabled || state.busy;
  }

  /** Whether the conversation shown exists on the server: export and metadata need it to. */
  function setStored(stored) {
    state.stored = stored;
    ui.exportButton.disabled = !stored;
    ui.metadataFields.disabled = !stored;
  }

  function newChat({ push = true } = {}) {
    state.sessionId = newSessionId();
    setStored(false);
    state.firstUserText = null;
    state.loadSequence += 1;
    lastSession.forget();
    setUrl(null, push);
    markCurrentInList();
    showTitle();
    showNewChatHint();
    setComposerEnabled(true);
    refreshPanel();
    ui.prompt.focus();
  }

  function openSession(sessionId, { push }) {
    state.sessionId = sessionId;
    setStored(true);
    state.firstUserText = null;
    setUrl(sessionId, push);
    markCurrentInList();
    showTitle();
    setComposerEnabled(true);
    return loadConversation();
  }

  async function loadConversation() {
    const sessionId = state.sessionId;
    const sequence = ++state.loadSequence;
    ui.messages.replaceChildren(emptyState(["Loading the conversation…"]));
    try {
      const history = await api(`/sessions/${enc(sessionId)}/history`);
      if (sequence !== state.loadSequence) return;
      state.loadFailed = false;
      lastSession.set(sessionId); // what a visit without ?session= reopens
      renderHistory(history);
      setStatus(history.messages.length ? `restored ${history.messages.length} messages from MongoDB` : "");
    } catch (error) {
      if (sequence !== state.loadSequence) return;
      state.loadFailed = error instanceof Unreachable;
      if (error.status === 404) showNotFound();
      else if (error instanceof Unreachable) {
        ui.messages.replaceChildren(
          emptyState(
            [
              "This conversation could not be loaded: the chat server is not answering.",
              "It appears here as soon as the server is back.",
            ],
            "empty problem",
          ),
        );
      } else {
        ui.messages.replaceChildren(emptyState([`This conversation could not be loaded: ${error.message}`], "empty problem"));
      }
    }
    refreshPanel();
  }

  function showNotFound() {
    setStored(false);
    ui.title.textContent = "Conversation not found";
    setComposerEnabled(false);
    ui.messages.replaceChildren(
      emptyState(
        [
          "Conversation not found.",
          "It may have been deleted, or it belongs to another user: each user sees only their own conversations.",
        ],
        "empty problem not-found",
        button("Start a new chat", "primary", () => newChat()),
      ),
    );
  }

  // A turn is shown as a user bubble and one assistant bubble holding every assistant message of the
  // turn: text (Markdown), tool calls and their results, then the turn's metrics.

  function addUserBubble(text, messageId) {
    const node = el("article", "message user");
    const role = el("div", "role", "You");
    const textNode = el("div", "text", text);
    node.append(role, textNode);
    const bubble = { node, role, textNode, text, messageId: null, editButton: null };
    setMessageId(bubble, messageId);
    ui.messages.append(node);
    scrollToEnd();
    return bubble;
  }

  function setMessageId(bubble, messageId) {
    bubble.messageId = messageId;
    if (messageId === null || messageId === undefined) return;
    bubble.node.dataset.messageId = String(messageId);
    if (!bubble.editButton) {
      bubble.editButton = button("Edit", "edit", () => startEdit(bubble), "Edit and resend: continues in a copy; this conversation stays");
      bubble.editButton.disabled = state.busy;
      bubble.role.append(bubble.editButton);
    }
  }

  function createAssistantBubble(stateName, attach = true) {
    const node = el("article", "message assistant");
    node.dataset.state = stateName;
    const body = el("div", "text");
    node.append(el("div", "role", "Assistant"), body);
    if (attach) ui.messages.append(node);
    scrollToEnd();
    return { node, body, segment: null, source: "", frame: 0, tools: new Map() };
  }

  function appendText(bubble, text) {
    if (!bubble.segment) {
      bubble.segment = el("div", "markdown");
      bubble.source = "";
      bubble.body.append(bubble.segment);
    }
    bubble.source += text;
    bubble.segment.dataset.source = bubble.source;
    if (!bubble.frame) {
      bubble.frame = window.requestAnimationFrame(() => renderText(bubble));
    }
  }

  function renderText(bubble) {
    if (bubble.frame) window.cancelAnimationFrame(bubble.frame);
    bubble.frame = 0;
    if (bubble.segment) bubble.segment.replaceChildren(window.ChatMarkdown.render(bubble.source));
    scrollToEnd();
  }

  function appendToolUse(bubble, block) {
    renderText(bubble);
    bubble.segment = null; // text after the call starts a new segment
    const details = el("details", "tool");
    details.dataset.toolUseId = block.tool_use_id;
    const summary = el("summary");
    const status = el("span", "status", " · running…");
    summary.append("Tool call ", el("strong", null, block.name), status);
    details.append(summary, el("div", "label", "Input"), el("pre", "input", JSON.stringify(block.input, null, 2)));
    bubble.body.append(details);
    const tool = { details, status };
    bubble.tools.set(block.tool_use_id, tool);
    return tool;
  }

  function appendToolResult(bubble, block) {
    const tool =
      bubble.tools.get(block.tool_use_id) || appendToolUse(bubble, { tool_use_id: block.tool_use_id, name: "tool", input: {} });
    tool.status.textContent = block.status === "error" ? " · failed" : " · done";
    tool.details.dataset.status = block.status;
    tool.details.append(el("div", "label", "Result"), el("pre", "result", block.text));
  }

  function appendBlock(bubble, block) {
    if (block.type === "text") appendText(bubble, block.text);
    else if (block.type === "tool_use") appendToolUse(bubble, block);
    else if (block.type === "tool_result") appendToolResult(bubble, block);
    else appendText(bubble, `[${block.kind}]`);
  }

  function metricsText(metrics) {
    const usage = metrics.usage || {};
    const parts = [`tokens ${usage.inputTokens ?? 0} in · ${usage.outputTokens ?? 0} out · ${usage.totalTokens ?? 0} total`];
    if (metrics.model_latency_ms !== undefined && metrics.model_latency_ms !== null) {
      parts.push(`model latency ${formatMs(metrics.model_latency_ms)}`);
    }
    if (metrics.cycles > 1) parts.push(`${metrics.cycles} model calls`);
    if (metrics.time_to_first_chunk_ms !== undefined) parts.push(`first chunk ${formatMs(metrics.time_to_first_chunk_ms)}`);
    if (metrics.duration_ms !== undefined) parts.push(`turn ${formatMs(metrics.duration_ms)}`);
    return parts.join(" · ");
  }

  function showMetrics(bubble, metrics) {
    let line = bubble.node.querySelector(".metrics");
    if (!line) {
      line = el("div", "metrics");
      bubble.node.append(line);
    }
    line.textContent = metricsText(metrics);
  }

  /** A restored turn's metrics: the sum of what is stored on each of its assistant messages. */
  function restoredMetrics(messages) {
    const recorded = messages.map((message) => message.event_loop_metrics).filter(Boolean);
    if (!recorded.length) return null;
    const usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 };
    let latency = 0;
    for (const figures of recorded) {
      for (const name of Object.keys(usage)) usage[name] += figures.usage?.[name] ?? 0;
      latency += figures.latencyMs ?? 0;
    }
    return { usage, model_latency_ms: latency, cycles: recorded.length };
  }

  function renderHistory(history) {
    ui.messages.replaceChildren();
    // This page's own turn in this conversation, still streaming: its bubbles stand for it (they keep
    // receiving the answer), in place of what the history holds of it so far.
    const live = state.live && state.live.sessionId === history.session_id ? state.live : null;
    const messages = live ? withoutLiveTurn(history.messages, live) : history.messages;
    let lastUser = null;
    let turn = null; // {bubble, messages}
    const finishTurn = () => {
      if (!turn) return;
      renderText(turn.bubble);
      const metrics = restoredMetrics(turn.messages);
      if (metrics) showMetrics(turn.bubble, metrics);
      turn = null;
    };
    for (const message of messages) {
      const isPrompt = message.role === "user" && !message.content.some((block) => block.type === "tool_result");
      if (isPrompt) {
        finishTurn();
        const text = message.content.map((block) => (block.type === "text" ? block.text : `[${block.kind}]`)).join("\n");
        state.firstUserText = state.firstUserText || text;
        lastUser = addUserBubble(text, message.message_id);
        continue;
      }
      if (!turn) turn = { bubble: createAssistantBubble("done"), messages: [] };
      turn.messages.push(message);
      for (const block of message.content) appendBlock(turn.bubble, block);
    }
    const unanswered = lastUser && !turn;
    finishTurn();
    const unsent = state.unsent.filter((entry) => entry.sessionId === history.session_id);
    if (!messages.length && !unsent.length && !live) showNewChatHint();
    else if (unanswered) {
      markFailed(lastUser, "No answer was stored for this message.", () => retry(lastUser, lastUser.text, true));
    }
    for (const entry of unsent) ui.messages.append(entry.bubble.node); // still waiting for Retry
    if (live) ui.messages.append(...[live.user, live.assistant].filter(Boolean).map((bubble) => bubble.node));
    showTitle();
    scrollToEnd();
  }

  /** The stored messages before the live turn: it starts at its user message (once stored, it has an id). */
  function withoutLiveTurn(messages, live) {
    if (live.messageId !== null) return messages.filter((message) => message.message_id < live.messageId);
    const last = messages[messages.length - 1];
    const isLiveMessage = last && last.role === "user" && last.text === live.text; // stored, not yet announced
    return isLiveMessage ? messages.slice(0, -1) : messages;
  }

  // -- sending --------------------------------------------------------------------------------------------

  function markFailed(target, reason, onRetry) {
    target.node.dataset.state = "failed";
    target.node.querySelector(".failure")?.remove();
    const line = el("div", "failure");
    line.append(el("span", null, reason));
    if (onRetry) line.append(button("Retry", "retry", onRetry));
    target.node.append(line);
  }

  function clearFailure(target) {
    target.node.querySelector(".failure")?.remove();
    delete target.node.dataset.state;
  }

  /**
   * Try `text` again in its own bubble: sent anew if it never reached the server; if it is stored
   * (its answer failed), the server is asked to answer it ("retry": it is not stored a second time).
   */
  function retry(userBubble, text, stored) {
    if (state.busy) return;
    state.unsent = state.unsent.filter((entry) => entry.bubble !== userBubble);
    send(text, userBubble, stored);
  }

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    return { name, data: data.length ? JSON.parse(data.join("\n")) : {} };
  }

  /** While a message is on its way, Send, Edit and Retry wait (one turn at a time). */
  function setBusy(busy) {
    state.busy = busy;
    ui.send.disabled = busy || ui.prompt.disabled;
    for (const control of ui.messages.querySelectorAll("button.edit, button.retry, .editor button.primary")) {
      control.disabled = busy;
    }
  }

  /** Send `text` (into `existingBubble` for a retry; `stored`: that message is stored, only its answer is asked for). */
  async function send(text, existingBubble = null, stored = false) {
    if (state.busy) return;
    if (text.length > MAX_MESSAGE) {
      const limit = MAX_MESSAGE.toLocaleString("en");
      setStatus(`${text.length.toLocaleString("en")} characters: a message holds at most ${limit}`, true);
      return;
    }
    setBusy(true);
    setStatus(""); // at the start: what is said while the answer streams (metadata saved, say) stays
    ui.messages.querySelector(".empty")?.remove();
    const user = existingBubble || addUserBubble(text, null);
    clearFailure(user);
    user.node.dataset.state = "sending";
    const sessionId = state.sessionId;
    const create = !state.stored; // a conversation that exists is continued, never created again
    const live = { sessionId, text, user, assistant: null, messageId: stored ? user.messageId : null };
    state.live = live;
    let assistant = null;
    let started = false;
    try {
      const response = await api(`/sessions/${enc(sessionId)}/chat/stream`, {
        method: "POST",
        body: JSON.stringify(stored ? { message: text, create: false, retry: true } : { message: text, create }),
        raw: true,
      });
      assistant = createAssistantBubble("streaming", user.node.isConnected); // not into another conversation
      live.assistant = assistant;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.name === "start") {
            started = true;
            live.messageId = event.data.user_message_id;
            user.node.dataset.state = "stored";
            setMessageId(user, event.data.user_message_id);
            if (create) conversationStarted(sessionId, text);
          } else if (event.name === "chunk") {
            appendText(assistant, event.data.text);
          } else if (event.name === "tool_use") {
            appendToolUse(assistant, event.data);
          } else if (event.name === "tool_result") {
            appendToolResult(assistant, event.data);
          } else if (event.name === "done") {
            renderText(assistant);
            showMetrics(assistant, event.data.metrics);
            assistant.node.dataset.state = "done";
          } else if (event.name === "error") {
            throw new ApiError(event.data.detail || "the turn failed", event.data.status);
          }
        }
      }
      if (assistant.node.dataset.state !== "done") throw new Error("the answer stopped before it was complete");
    } catch (error) {
      const reason = error instanceof Unreachable ? `cannot reach the chat server at ${BACKEND}` : error.message;
      if (started) {
        renderText(assistant);
        markFailed(assistant, `No answer: ${reason}. Your message is stored.`, () => {
          assistant.node.remove();
          retry(user, text, true);
        });
        setStatus(reason, true);
      } else if (error instanceof ApiError && error.status === 404 && !create) {
        assistant?.node.remove();
        user.node.remove();
        conversationGone(sessionId, text);
      } else {
        assistant?.node.remove();
        // A message the server refused as it is (too long, say) would be refused again: no Retry for it.
        const refused = error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 409;
        const failure = stored ? `Still no answer: ${reason}. Your message is stored.` : `Not sent: ${reason}.`;
        markFailed(user, failure, refused ? null : () => retry(user, text, stored));
        const waiting = state.unsent.some((entry) => entry.bubble === user);
        if (!refused && !waiting) state.unsent.push({ sessionId, bubble: user });
        setStatus(reason, true);
      }
    } finally {
      state.live = null;
      setBusy(false);
      scrollToEnd();
    }
    if (started && sessionId === state.sessionId && !user.node.isConnected) {
      loadConversation(); // left while it streamed, back before its bubbles were shown again: the stored turn
    }
    if (started) {
      await refreshNewest();
      await refreshPanel();
    }
  }

  /** The first message of a new chat was stored: the session exists now. */
  function conversationStarted(sessionId, text) {
    if (sessionId !== state.sessionId) return;
    setStored(true);
    state.firstUserText = text;
    lastSession.set(sessionId);
    setUrl(sessionId, false);
    showTitle();
    refreshPanel();
  }

  /** The open conversation was deleted (in another tab, on another device) or expired: a new chat, `text` kept. */
  function conversationGone(sessionId, text) {
    state.summaries.delete(sessionId);
    renderSessionList();
    loadSessions(); // the list as it is now, without it (and with what else changed elsewhere)
    if (sessionId !== state.sessionId) return;
    newChat();
    ui.messages.replaceChildren(
      emptyState(
        [
          "This conversation no longer exists: it was deleted (in another tab or on another device) or it expired.",
          "Your message was not sent. It is back in the box below: send it to start a new conversation.",
        ],
        "empty problem gone",
      ),
    );
    ui.prompt.value = text;
    updateCounter();
    setStatus("this conversation no longer exists; a new chat is open", true);
  }

  // -- edit and resend -------------------------------------------------------------------------------------

  function startEdit(bubble) {
    if (bubble.node.querySelector(".editor")) return;
    const editor = el("div", "editor");
    const area = el("textarea");
    area.maxLength = MAX_MESSAGE;
    area.value = bubble.text;
    area.setAttribute("aria-label", "Edited message");
    const cancel = button("Cancel", null, () => {
      editor.remove();
      bubble.textNode.hidden = false;
      bubble.editButton?.focus();
    });
    const resend = button("Send edited", "primary", async () => {
      const text = area.value.trim();
      if (!text) return;
      resend.disabled = true; // until the copy is made and the text sent
      await editAndResend(bubble.messageId, text);
      resend.disabled = state.busy;
    });
    resend.disabled = state.busy;
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        cancel.click();
      }
    });
    const buttons = el("div", "buttons");
    buttons.append(cancel, resend);
    editor.append(area, buttons);
    bubble.textNode.hidden = true;
    bubble.node.append(editor);
    area.focus();
  }

  /** Fork at the message before the edited one, open the copy, and send the edited text there. */
  async function editAndResend(messageId, text) {
    if (state.busy) return;
    const original = state.sessionId;
    if (messageId === 0) {
      newChat(); // nothing comes before the first message: a new conversation is that copy
      await send(text);
      return;
    }
    try {
      const fork = await api(`/sessions/${enc(original)}/fork`, {
        method: "POST",
        body: JSON.stringify({ up_to_message_id: messageId - 1 }),
      });
      await openSession(fork.session_id, { push: true });
      await send(text);
      setStatus("edited in a copy of the conversation; the original is unchanged in the list");
    } catch (error) {
      setStatus(`edit: ${error.message}`, true);
    }
  }

  // -- the details panel: metadata and statistics ----------------------------------------------------------

  function renderMetadata(metadata) {
    const rows = [];
    for (const [key, value] of Object.entries(metadata)) {
      // A field's key and its Remove button, then its value below; a long one is cut short (all of it in the tooltip).
      const text = typeof value === "string" ? value : JSON.stringify(value);
      const name = el("dt", null, key);
      const shown = el("dd", null, text);
      name.title = key;
      shown.title = text;
      rows.push(name, button("×", "remove", () => deleteMetadataField(key), `Remove ${key}`), shown);
    }
    if (!rows.length) rows.push(el("dd", "hint", "none yet"));
    ui.metadata.replaceChildren(...rows);
  }

  function renderStats(stats) {
    const tokens = stats.tokens || {};
    const latency = stats.latency_ms || {};
    const rows = [
      ["messages", stats.message_count],
      ["model calls", stats.model_calls],
      ["input tokens", tokens.inputTokens],
      ["output tokens", tokens.outputTokens],
      ["total tokens", tokens.totalTokens],
      ["mean latency", formatMs(latency.mean) ?? "–"],
      ["created", stats.created_at ? new Date(stats.created_at).toLocaleString() : "–"],
      ["updated", stats.updated_at ? new Date(stats.updated_at).toLocaleString() : "–"],
    ];
    ui.stats.replaceChildren(...rows.flatMap(([name, value]) => [el("dt", null, name), el("dd", null, value ?? "–")]));
  }

  async function refreshPanel() {
    const sessionId = state.sessionId;
    const sequence = ++state.panelSequence; // only the latest refresh is shown
    if (!state.stored) {
      ui.metadata.replaceChildren(el("dd", "hint", "the session is created with its first message"));
      ui.stats.replaceChildren();
      return;
    }
    try {
      const [metadata, stats] = await Promise.all([
        api(`/sessions/${enc(sessionId)}/metadata`),
        api(`/sessions/${enc(sessionId)}/stats`),
      ]);
      if (sequence !== state.panelSequence) return;
      renderMetadata(metadata.metadata);
      renderStats(stats);
    } catch (error) {
      if (sequence !== state.panelSequence) return;
      ui.metadata.replaceChildren(el("dd", "hint", error.status === 404 ? "no such conversation" : "not available"));
      ui.stats.replaceChildren();
    }
  }

  async function setMetadataField(key, rawValue) {
    let value = rawValue;
    try {
      value = JSON.parse(rawValue);
    } catch (_) {
      // not JSON: store the text as it is
    }
    ui.metadataFields.disabled = true; // one change at a time
    try {
      const body = await api(`/sessions/${enc(state.sessionId)}/metadata`, {
        method: "PUT",
        body: JSON.stringify({ metadata: { [key]: value } }),
      });
      renderMetadata(body.metadata);
      setStatus(`metadata field "${excerpt(key)}" saved`);
      refreshPanel();
    } catch (error) {
      setStatus(`metadata: ${error.message}`, true);
    } finally {
      ui.metadataFields.disabled = !state.stored;
    }
  }

  async function deleteMetadataField(key) {
    try {
      const body = await api(`/sessions/${enc(state.sessionId)}/metadata?keys=${enc(key)}`, { method: "DELETE" });
      renderMetadata(body.metadata);
      setStatus(`metadata field "${excerpt(key)}" removed`);
    } catch (error) {
      setStatus(`metadata: ${error.message}`, true);
    }
  }

  async function exportConversation() {
    const sessionId = state.sessionId;
    ui.exportButton.disabled = true; // until the download is ready
    try {
      const response = await api(`/sessions/${enc(sessionId)}/export`, { raw: true });
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const name = /filename="([^"]+)"/.exec(disposition)?.[1] || "session.json";
      const url = URL.createObjectURL(blob);
      const link = el("a");
      link.href = url;
      link.download = name;
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setStatus(`exported ${name}`);
    } catch (error) {
      setStatus(`export: ${error.message}`, true);
    } finally {
      ui.exportButton.disabled = !state.stored;
    }
  }

  // -- the user ------------------------------------------------------------------------------------------------

  function askForUser() {
    ui.userInput.value = state.user || "";
    ui.userCancel.hidden = !state.user;
    ui.userDialog.showModal();
    ui.userInput.focus();
  }

  /** Show `user`'s conversations: `sessionId` if given, else their last one, else a new chat. */
  function begin(sessionId) {
    ui.userName.textContent = state.user;
    loadSessions();
    const chosen = sessionId || lastSession.get();
    if (chosen) openSession(chosen, { push: false });
    else newChat({ push: false });
  }

  // -- wiring ---------------------------------------------------------------------------------------------------

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.prompt.value.trim();
    if (!text || state.busy || ui.prompt.disabled) return;
    if (text.length > MAX_MESSAGE) {
      send(text); // says why, and sends nothing: the text stays in the box
      return;
    }
    ui.prompt.value = "";
    updateCounter();
    send(text).finally(() => ui.prompt.focus());
  });

  /** From 18,000 characters on, how many the message has of the 20,000 it may. */
  function updateCounter() {
    const length = ui.prompt.value.length;
    const full = length >= MAX_MESSAGE;
    ui.promptCounter.hidden = length < COUNTER_FROM;
    ui.promptCounter.textContent = `${length.toLocaleString("en")} / ${MAX_MESSAGE.toLocaleString("en")} characters${
      full ? ": the limit" : ""
    }`;
    ui.promptCounter.classList.toggle("full", full);
  }

  ui.prompt.addEventListener("input", updateCounter);

  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    }
  });

  ui.metadataForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.metadataKey.value.trim();
    if (!key) return;
    setMetadataField(key, ui.metadataValue.value);
    ui.metadataKey.value = "";
    ui.metadataValue.value = "";
  });

  ui.newChat.addEventListener("click", () => {
    closeDrawer();
    newChat();
  });
  ui.exportButton.addEventListener("click", exportConversation);
  ui.sidebar.addEventListener("scroll", loadMoreIfAtEnd);
  ui.toggleSidebar.addEventListener("click", () =>
    document.body.classList.contains("sidebar-open") ? closeDrawer() : openDrawer(),
  );
  ui.toggleDetails.addEventListener("click", () => {
    const open = document.body.classList.toggle("details-open");
    ui.toggleDetails.setAttribute("aria-expanded", String(open));
  });
  ui.bannerRetry.addEventListener("click", checkHealth);
  document.addEventListener("click", (event) => {
    // A click beside the open drawer closes it, as on any phone app.
    if (!document.body.classList.contains("sidebar-open")) return;
    // The path as dispatched: a click that replaces its own button (Delete, Rename) is still inside.
    const path = event.composedPath();
    if (!path.includes(ui.sidebar) && !path.includes(ui.toggleSidebar)) closeDrawer();
  });
  document.addEventListener("keydown", (event) => {
    // Escape closes what is open over the conversation: the drawer, the details panel (the user
    // dialog, a <dialog>, closes itself; a rename, an edit or a delete question handle their own).
    if (event.key !== "Escape" || event.defaultPrevented || ui.userDialog.open) return;
    if (document.body.classList.contains("sidebar-open")) {
      closeDrawer();
      ui.toggleSidebar.focus();
    } else if (document.body.classList.contains("details-open")) {
      document.body.classList.remove("details-open");
      ui.toggleDetails.setAttribute("aria-expanded", "false");
      ui.toggleDetails.focus();
    }
  });
  ui.userButton.addEventListener("click", askForUser);
  ui.userCancel.addEventListener("click", () => ui.userDialog.close());
  ui.userDialog.addEventListener("cancel", (event) => {
    if (!state.user) event.preventDefault(); // a user must be chosen first
  });
  ui.userForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const user = ui.userInput.value.trim();
    if (!USER_PATTERN.test(user)) return;
    ui.userDialog.close();
    if (user === state.user) return;
    const first = state.user === null;
    state.user = user;
    store.setItem(STORAGE_USER, user);
    begin(first ? query.get("session") : null);
  });
  window.addEventListener("popstate", () => {
    const sessionId = new URLSearchParams(window.location.search).get("session");
    if (sessionId) openSession(sessionId, { push: false });
    else newChat({ push: false });
  });
  window.setInterval(() => {
    for (const li of ui.sessionList.children) {
      const summary = state.summaries.get(li.dataset.sessionId);
      const when = li.querySelector(".when");
      if (summary && when) when.textContent = whenText(summary);
    }
  }, 30_000);

  ui.backendUrl.textContent = BACKEND;
  ui.backendNotice.hidden = !OTHER_BACKEND;
  ui.backendNoticeText.textContent =
    `This visit uses the chat server at ${BACKEND} (from the address), not the default ${DEFAULT_BACKEND}: ` +
    "your user name and your messages go there. Its user and conversations are kept apart from the default's, " +
    "for this tab only.";
  ui.backendReset.href = window.location.pathname; // the default backend's own user and conversations
  ui.backendReset.title = "Leave this backend: the page with the default backend, as you left it there";
  trackTopHeight();
  if (state.user) begin(query.get("session"));
  else askForUser();
})();
