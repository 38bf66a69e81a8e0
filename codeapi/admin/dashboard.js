// codeapi admin dashboard: plain DOM, no build step. Every value from the API goes in as text, never HTML.
"use strict";

const STORAGE_KEY = "codeapi-master-key";
const REFRESH_MS = 15000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

class SignedOut extends Error {}

async function api(path, options = {}) {
  const key = sessionStorage.getItem(STORAGE_KEY);
  if (!key) throw new SignedOut();
  const response = await fetch(path, {
    ...options,
    headers: { "x-api-key": key, "content-type": "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem(STORAGE_KEY);
    throw new SignedOut(body.error || "signed out");
  }
  if (!response.ok && response.status !== 503) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svgElement(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function showView(name) {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== name;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
}

function showSignedIn(signedIn) {
  $("signin").hidden = signedIn;
  $("nav").hidden = !signedIn;
  if (!signedIn) for (const view of document.querySelectorAll(".view")) view.hidden = true;
}

function renderHealth(health) {
  const row = $("health");
  row.replaceChildren();
  const overall = element("div", null, "card stat");
  overall.append(element("div", "Service", "muted"), element("div", health.status, `value status-${health.status}`));
  row.append(overall);
  for (const [name, check] of Object.entries(health.checks || {})) {
    const card = element("div", null, "card stat");
    card.append(element("div", name, "muted"), element("div", check.status, `value status-${check.status}`));
    card.append(element("div", check.backend || check.mode || check.error || "", "muted"));
    row.append(card);
  }
}

function renderSummary(summary, stats) {
  const row = $("summary");
  row.replaceChildren();
  const numbers = [
    ["Executions (24 h)", summary.executions],
    ["Errors", summary.errors],
    ["Timeouts", summary.timeouts],
    ["Wall seconds", summary.wall_s],
    ["Bytes in / out", `${summary.bytes_in} / ${summary.bytes_out}`],
    ["Keys (enabled / managed)", `${stats.keys.enabled} / ${stats.keys.managed}`],
  ];
  for (const [label, value] of numbers) {
    const card = element("div", null, "card stat");
    card.append(element("div", label, "muted"), element("div", value, "value"));
    row.append(card);
  }
}

function renderTimeSeries(points) {
  const chart = $("timeseries");
  chart.replaceChildren();
  const width = 720, height = 180, bottom = 20;
  const peak = Math.max(1, ...points.map((point) => point.executions));
  const step = width / points.length;
  points.forEach((point, index) => {
    const total = ((height - bottom) * point.executions) / peak;
    const failed = ((height - bottom) * point.errors) / peak;
    const x = index * step + 2;
    chart.append(svgElement("rect", { class: "bar", x, y: height - bottom - total, width: step - 4, height: total }));
    chart.append(svgElement("rect", { class: "bar errors", x, y: height - bottom - failed, width: step - 4, height: failed }));
    if (index % 3 === 0) {
      const hour = new Date(point.hour_at).getHours().toString().padStart(2, "0");
      chart.append(svgElement("text", { x, y: height - 6 }, `${hour}h`));
    }
  });
  chart.append(svgElement("text", { x: 4, y: 12 }, `peak ${peak}/h`));
}

function renderLanguages(languages) {
  const chart = $("languages");
  chart.replaceChildren();
  const peak = Math.max(1, ...languages.map((item) => item.executions));
  languages.slice(0, 13).forEach((item, index) => {
    const y = index * 15 + 4;
    chart.append(svgElement("text", { x: 0, y: y + 10 }, item.language));
    chart.append(svgElement("rect", { class: "bar", x: 50, y, width: (270 * item.executions) / peak, height: 11 }));
    chart.append(svgElement("text", { x: 54 + (270 * item.executions) / peak, y: y + 10 }, String(item.executions)));
  });
  if (languages.length === 0) chart.append(svgElement("text", { x: 0, y: 14 }, "no executions yet"));
}

function renderByKey(rows) {
  const body = $("by-key").tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = element("tr");
    for (const value of [row.name, row.source, row.executions, row.errors, row.timeouts, row.wall_s]) tr.append(element("td", value));
    body.append(tr);
  }
}

function limitsText(limits) {
  const set = Object.entries(limits || {}).filter(([, value]) => value !== null);
  return set.length ? set.map(([window, value]) => `${value} ${window.replace("_", " ")}`).join(", ") : "none";
}

function renderKeys(keys) {
  const body = $("keys-table").tBodies[0];
  body.replaceChildren();
  for (const key of keys) {
    const tr = element("tr");
    tr.dataset.keyHash = key.key_hash;
    // Environment keys keep no use counters (see "By key" on the overview for their executions).
    const managed = key.source === "managed";
    const uses = managed ? key.usage_count : "—";
    const lastUsed = !managed ? "—" : key.last_used_at ? new Date(key.last_used_at).toLocaleString() : "never";
    for (const [value, name] of [
      [key.name, "name"], [key.key_prefix, "prefix"], [key.source, "source"], [key.enabled ? "yes" : "no", "enabled"],
      [uses, "uses"], [lastUsed, "last-used"], [limitsText(key.rate_limits), "limits"],
    ]) tr.append(element("td", value, `col-${name}`));
    const actions = element("td");
    if (managed) {
      const toggle = element("button", key.enabled ? "Disable" : "Enable", "toggle");
      toggle.type = "button";
      toggle.addEventListener("click", () => changeKey(key.key_hash, "PATCH", { enabled: !key.enabled }));
      const revoke = element("button", "Revoke", "danger revoke");
      revoke.type = "button";
      revoke.addEventListener("click", () => {
        if (confirm(`Revoke ${key.name} (${key.key_prefix}…)? Clients using it are refused at once.`)) changeKey(key.key_hash, "DELETE");
      });
      actions.append(toggle, " ", revoke);
    } else {
      actions.append(element("span", "from the environment", "muted"));
    }
    tr.append(actions);
    body.append(tr);
  }
}

async function changeKey(keyHash, method, body) {
  try {
    await api(`/api/v1/admin/keys/${encodeURIComponent(keyHash)}`, { method, body: body ? JSON.stringify(body) : undefined });
    await refresh();
  } catch (error) {
    handle(error, "keys-error");
  }
}

async function refresh() {
  try {
    const [health, stats, summary, series, languages, byKey, keys] = await Promise.all([
      api("/api/v1/admin/health"),
      api("/api/v1/admin/stats"),
      api("/api/v1/admin/metrics/summary"),
      api("/api/v1/admin/metrics/time-series?hours=24"),
      api("/api/v1/admin/metrics/languages"),
      api("/api/v1/admin/metrics/api-keys"),
      api("/api/v1/admin/keys"),
    ]);
    renderHealth(health);
    renderSummary(summary, stats);
    renderTimeSeries(series);
    renderLanguages(languages);
    renderByKey(byKey);
    renderKeys(keys);
    document.body.dataset.refreshedAt = String(Date.now());
  } catch (error) {
    handle(error, "keys-error");
  }
}

function handle(error, where) {
  if (error instanceof SignedOut) {
    showSignedIn(false);
    $("signin-error").textContent = error.message || "Please sign in";
    return;
  }
  $(where).textContent = error.message;
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(STORAGE_KEY, $("master-key").value);
  $("master-key").value = "";
  $("signin-error").textContent = "";
  try {
    await api("/api/v1/admin/stats");
  } catch (error) {
    handle(error, "signin-error");
    return;
  }
  showSignedIn(true);
  showView("overview");
  await refresh();
}

async function createKey(event) {
  event.preventDefault();
  $("keys-error").textContent = "";
  const limits = {};
  if ($("key-per-minute").value) limits.per_minute = Number($("key-per-minute").value);
  if ($("key-daily").value) limits.daily = Number($("key-daily").value);
  try {
    const created = await api("/api/v1/admin/keys", {
      method: "POST",
      body: JSON.stringify({ name: $("key-name").value, rate_limits: limits }),
    });
    $("new-key-value").textContent = created.api_key;
    $("copied").textContent = "";
    $("new-key").hidden = false;
    $("create-form").reset();
    await refresh();
  } catch (error) {
    handle(error, "keys-error");
  }
}

async function copyKey() {
  const text = $("new-key-value").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copied").textContent = "copied";
  } catch {
    const range = document.createRange();  // no clipboard permission: select it for Ctrl+C
    range.selectNodeContents($("new-key-value"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copied").textContent = "selected: press Ctrl+C";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("create-form").addEventListener("submit", createKey);
  $("copy-key").addEventListener("click", copyKey);
  $("refresh").addEventListener("click", refresh);
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    showSignedIn(false);
  });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  setInterval(() => {
    if (sessionStorage.getItem(STORAGE_KEY) && !document.hidden) refresh();
  }, REFRESH_MS);
  if (sessionStorage.getItem(STORAGE_KEY)) {
    showSignedIn(true);
    showView("overview");
    refresh();
  }
});
