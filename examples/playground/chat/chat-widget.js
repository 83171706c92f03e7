// Chat playground for examples/example_fastapi_streaming.py. Plain JavaScript, no build step.
//
// - Answers stream in as server-sent events (POST /sessions/{id}/chat/stream, read with fetch).
// - The session id is kept in localStorage, so a reload resumes the conversation: the history
//   comes back from the backend (GET /sessions/{id}/history), i.e. from MongoDB.
// - Every answer shows its turn's metrics; the side panel shows the session's metadata and statistics.
// - The backend URL is ?backend=..., else localStorage "chatPlayground.backend", else port 8880 on
//   this page's host.
//
// All user and model text is put into the page with textContent, never innerHTML.
"use strict";

(function () {
  const STORAGE_SESSION = "chatPlayground.sessionId";
  const STORAGE_BACKEND = "chatPlayground.backend";

  const $ = (id) => document.getElementById(id);
  const elements = {
    messages: $("messages"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    sessionId: $("session-id"),
    backendUrl: $("backend-url"),
    newSession: $("new-session"),
    status: $("status"),
    metadata: $("metadata"),
    metadataForm: $("metadata-form"),
    metadataKey: $("metadata-key"),
    metadataValue: $("metadata-value"),
    stats: $("stats"),
  };

  function backendUrl() {
    const fromQuery = new URLSearchParams(window.location.search).get("backend");
    if (fromQuery) {
      localStorage.setItem(STORAGE_BACKEND, fromQuery);
      return fromQuery.replace(/\/+$/, "");
    }
    const stored = localStorage.getItem(STORAGE_BACKEND);
    if (stored) return stored.replace(/\/+$/, "");
    const protocol = window.location.protocol === "https:" ? "https:" : "http:";
    return `${protocol}//${window.location.hostname || "127.0.0.1"}:8880`;
  }

  function newSessionId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return `web-${window.crypto.randomUUID()}`;
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  const BACKEND = backendUrl();
  let sessionId = localStorage.getItem(STORAGE_SESSION);
  if (!sessionId) {
    sessionId = newSessionId();
    localStorage.setItem(STORAGE_SESSION, sessionId);
  }

  // -- small DOM helpers (textContent only) ------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(text, isError) {
    elements.status.textContent = text || "";
    elements.status.classList.toggle("error", Boolean(isError));
  }

  function scrollToEnd() {
    elements.messages.scrollTop = elements.messages.scrollHeight;
  }

  function showEmptyHint() {
    if (!elements.messages.querySelector(".message")) {
      elements.messages.replaceChildren(el("p", "empty", "No messages yet in this session. Say hello."));
    }
  }

  function addMessage(role, text) {
    const hint = elements.messages.querySelector(".empty");
    if (hint) hint.remove();
    const bubble = el("div", `message ${role}`);
    bubble.dataset.role = role;
    bubble.append(el("span", "role", role === "user" ? "You" : "Assistant"), el("span", "text", text));
    elements.messages.append(bubble);
    scrollToEnd();
    return bubble;
  }

  function formatMs(ms) {
    if (ms === undefined || ms === null) return null;
    return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
  }

  function metricsText(metrics) {
    const usage = metrics.usage || {};
    const parts = [`tokens ${usage.inputTokens ?? 0} in · ${usage.outputTokens ?? 0} out · ${usage.totalTokens ?? 0} total`];
    const modelLatency = metrics.model_latency_ms ?? metrics.latency_ms;
    if (modelLatency !== undefined && modelLatency !== null) parts.push(`model latency ${formatMs(modelLatency)}`);
    if (metrics.time_to_first_chunk_ms !== undefined) parts.push(`first chunk ${formatMs(metrics.time_to_first_chunk_ms)}`);
    if (metrics.duration_ms !== undefined) parts.push(`turn ${formatMs(metrics.duration_ms)}`);
    return parts.join(" · ");
  }

  function showMetrics(bubble, metrics) {
    let line = bubble.querySelector(".metrics");
    if (!line) {
      line = el("span", "metrics");
      bubble.append(line);
    }
    line.textContent = metricsText(metrics);
  }

  // -- backend calls -------------------------------------------------------------------------------

  const sessionPath = () => `${BACKEND}/sessions/${encodeURIComponent(sessionId)}`;

  async function requestJson(url, options) {
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  async function loadHistory() {
    elements.messages.replaceChildren();
    try {
      const history = await requestJson(`${sessionPath()}/history`);
      for (const message of history.messages) {
        if (!message.text) continue; // tool-only messages have nothing to show
        const bubble = addMessage(message.role, message.text);
        bubble.dataset.state = "done";
        if (message.metrics) showMetrics(bubble, message.metrics);
      }
      setStatus(history.messages.length ? `restored ${history.messages.length} messages from MongoDB` : "");
    } catch (error) {
      if (error.status !== 404) setStatus(`history: ${error.message}`, true);
    }
    showEmptyHint();
  }

  function renderMetadata(metadata) {
    const rows = [];
    for (const [key, value] of Object.entries(metadata)) {
      const remove = el("button", "remove", "×");
      remove.type = "button";
      remove.title = `Remove ${key}`;
      remove.addEventListener("click", () => deleteMetadataField(key));
      rows.push(el("dt", null, key), el("dd", null, typeof value === "string" ? value : JSON.stringify(value)), remove);
    }
    if (!rows.length) rows.push(el("dd", "hint", "none yet"));
    elements.metadata.replaceChildren(...rows);
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
    elements.stats.replaceChildren(...rows.flatMap(([name, value]) => [el("dt", null, name), el("dd", null, value ?? "–")]));
  }

  async function refreshPanel() {
    try {
      const [metadata, stats] = await Promise.all([
        requestJson(`${sessionPath()}/metadata`),
        requestJson(`${sessionPath()}/stats`),
      ]);
      renderMetadata(metadata.metadata);
      renderStats(stats);
    } catch (error) {
      if (error.status === 404) {
        elements.metadata.replaceChildren(el("dd", "hint", "the session is created with its first message"));
        elements.stats.replaceChildren();
      } else {
        setStatus(`panel: ${error.message}`, true);
      }
    }
  }

  async function setMetadataField(key, rawValue) {
    let value = rawValue;
    try {
      value = JSON.parse(rawValue);
    } catch (_) {
      // not JSON: store the text as it is
    }
    try {
      const body = await requestJson(`${sessionPath()}/metadata`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ metadata: { [key]: value } }),
      });
      renderMetadata(body.metadata);
      setStatus(`metadata field "${key}" saved`);
      refreshPanel();
    } catch (error) {
      setStatus(`metadata: ${error.message}`, true);
    }
  }

  async function deleteMetadataField(key) {
    try {
      const body = await requestJson(`${sessionPath()}/metadata?keys=${encodeURIComponent(key)}`, { method: "DELETE" });
      renderMetadata(body.metadata);
      setStatus(`metadata field "${key}" removed`);
    } catch (error) {
      setStatus(`metadata: ${error.message}`, true);
    }
  }

  // -- streaming a turn ------------------------------------------------------------------------------

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    return { name, data: data.length ? JSON.parse(data.join("\n")) : {} };
  }

  async function sendMessage(text) {
    addMessage("user", text).dataset.state = "done";
    const bubble = addMessage("assistant", "");
    bubble.dataset.state = "streaming";
    const textNode = bubble.querySelector(".text");
    setStatus("streaming…");
    try {
      const response = await fetch(`${sessionPath()}/chat/stream`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ message: text }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
      }
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
          if (event.name === "chunk") {
            textNode.textContent += event.data.text;
            scrollToEnd();
          } else if (event.name === "done") {
            showMetrics(bubble, event.data.metrics);
            bubble.dataset.state = "done";
            setStatus("");
          } else if (event.name === "error") {
            throw new Error(event.data.detail || "the turn failed");
          }
        }
      }
      if (bubble.dataset.state !== "done") throw new Error("the stream ended early");
    } catch (error) {
      bubble.dataset.state = "error";
      bubble.classList.add("error");
      bubble.append(el("span", "metrics", `error: ${error.message}`));
      setStatus(error.message, true);
    }
    scrollToEnd();
    await refreshPanel();
  }

  // -- wiring ------------------------------------------------------------------------------------------

  let busy = false;

  elements.composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = elements.prompt.value.trim();
    if (!text || busy) return;
    busy = true;
    elements.send.disabled = true;
    elements.prompt.value = "";
    try {
      await sendMessage(text);
    } finally {
      busy = false;
      elements.send.disabled = false;
      elements.prompt.focus();
    }
  });

  elements.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      elements.composer.requestSubmit();
    }
  });

  elements.metadataForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = elements.metadataKey.value.trim();
    if (!key) return;
    setMetadataField(key, elements.metadataValue.value);
    elements.metadataKey.value = "";
    elements.metadataValue.value = "";
  });

  elements.newSession.addEventListener("click", () => {
    sessionId = newSessionId();
    localStorage.setItem(STORAGE_SESSION, sessionId);
    elements.sessionId.textContent = sessionId;
    setStatus("new session");
    loadHistory();
    refreshPanel();
  });

  elements.sessionId.textContent = sessionId;
  elements.backendUrl.textContent = BACKEND;
  loadHistory().then(refreshPanel);
})();
