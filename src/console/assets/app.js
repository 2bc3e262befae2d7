// The delivery console (docs/console.md). Plain JavaScript, no build step,
// no dependency: it calls the same /v1 API as the cockpit, with the bearer
// token kept in sessionStorage and sent in the Authorization header only.
// Everything shown is set as text (never parsed as HTML).

const TOKEN_KEY = "impact-in.token";
const NOTICE_KEY = "impact-in.notice";
const SLA_REFRESH_MS = 5 * 60 * 1000;
const POLL_MS = 1000;
const POLL_LIMIT = 30;
const BULK_LIMIT = 100;
const PLATFORMS = ["benevity", "goodera", "workday"];
const STATUS_TEXT = { healthy: "Healthy", warning: "Warning", breach: "Breach" };

const $ = (id) => document.getElementById(id);
const state = { session: null, company: "", deliveries: [], selected: new Set(), slaTimer: null };

// --- Token: from the fragment link, to sessionStorage, off the address bar ---

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    // The fragment never reaches a server; it must not stay in the address
    // bar, the history or a shared link either.
    history.replaceState(null, "", location.pathname + location.search);
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    signOut("Your token was refused (expired or invalid). Sign in again.");
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data };
}

// --- Small DOM helpers --------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const clear = (node, ...children) => node.replaceChildren(...children.flat());
const say = (text) => { $("status").textContent = text; };

function badge(status) {
  const text = STATUS_TEXT[status] || status || "—";
  return el("span", { class: `badge s-${status || "none"}`, text });
}

// How each SLA metric reads, and how its values are written.
const METRIC_TEXT = {
  successRate: ["success rate", "pct"],
  retrySuccessRate: ["retry success rate", "pct"],
  p95DeliveryLatencyMs: ["p95 latency", "ms"],
  consecutiveFailures: ["consecutive failures", "n"],
  errorBudgetBurnRate: ["error budget burn rate", "n"],
};
const metricValue = (metric, v) => {
  const kind = METRIC_TEXT[metric]?.[1];
  if (kind === "pct") return pct(v);
  if (kind === "ms") return ms(v);
  return String(v);
};
const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(2)} %`);
const ms = (v) => {
  if (v === null || v === undefined) return "—";
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 120000) return `${(v / 1000).toFixed(1)} s`;
  return `${(v / 60000).toFixed(1)} min`;
};
const when = (t) => (t ? new Date(t).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "—");
const platformName = (p) => (p ? p[0].toUpperCase() + p.slice(1) : "All platforms");

function failure(node, err) {
  clear(node, el("p", { class: "error", role: "alert", text: `Could not load: ${err.message}` }));
}

// --- Session ------------------------------------------------------------------

// Forgets the token and starts the page afresh (nothing of the last
// session's data or controls survives), with `message` to show.
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.session) {
    if (message) sessionStorage.setItem(NOTICE_KEY, message);
    location.replace(location.pathname);
    return;
  }
  $("console").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || sessionStorage.getItem(NOTICE_KEY) || "";
  sessionStorage.removeItem(NOTICE_KEY);
}

async function start() {
  takeTokenFromFragment();
  if (!token()) return signOut();
  let session;
  try {
    ({ data: session } = await api("/v1/impact-in/session"));
  } catch (err) {
    if (err.status !== 401) signOut(`Cannot sign in: ${err.message}`);
    return;
  }
  state.session = session;
  $("sign-in").hidden = true;
  $("who").hidden = false;
  $("console").hidden = false;
  const who = session.kind === "ops_key" ? "ops key" : session.subject;
  const companies = session.companies === null ? "every company" : `${session.companies.length} compan${session.companies.length === 1 ? "y" : "ies"}`;
  $("who-text").textContent = `Signed in as ${who} · ${companies} · roles: ${session.roles.join(", ") || "none"}`;
  setUpCompany(session);
  readFilters();
  // Without the write role the controls are not there at all.
  if (session.canReplay) $("replay-bar").hidden = false;
  else $("replay-bar").remove();
  loadAll();
  clearInterval(state.slaTimer);
  state.slaTimer = setInterval(loadSla, SLA_REFRESH_MS);
}

function setUpCompany(session) {
  const fromUrl = new URLSearchParams(location.search).get("company") || "";
  const select = $("company-select");
  const input = $("company-input");
  if (session.companies === null) {
    input.hidden = false;
    select.hidden = true;
    input.value = fromUrl;
    state.company = fromUrl;
  } else {
    select.hidden = false;
    input.hidden = true;
    clear(select, session.companies.map((c) => el("option", { value: c, text: c })));
    state.company = session.companies.includes(fromUrl) ? fromUrl : session.companies[0] || "";
    select.value = state.company;
  }
}

function companyChanged(value) {
  state.company = value.trim();
  writeUrl();
  loadAll();
}

function loadAll() {
  loadSla();
  loadCharts();
  loadDeliveries();
  loadSchedules();
  loadOps();
}

// --- Filters, reflected in the URL (never the token) -------------------------

const filters = { provider: "", status: "", from: "", to: "", limit: "30" };

function readFilters() {
  const query = new URLSearchParams(location.search);
  const form = $("filters");
  for (const name of Object.keys(filters)) {
    filters[name] = query.get(name) || (name === "limit" ? "30" : "");
    form.elements[name].value = filters[name];
  }
}

function writeUrl() {
  const query = new URLSearchParams();
  if (state.company) query.set("company", state.company);
  for (const [k, v] of Object.entries(filters)) {
    if (v && !(k === "limit" && v === "30")) query.set(k, v);
  }
  const search = query.toString();
  history.pushState(null, "", location.pathname + (search ? `?${search}` : ""));
}

// --- SLA widget -----------------------------------------------------------------

function figureCells(f) {
  return [
    el("td", {}, badge(f.slaStatus)),
    el("td", { class: "num", text: pct(f.successRate) }),
    el("td", { class: "num", text: ms(f.p95DeliveryLatencyMs) }),
    el("td", { class: "num", text: pct(f.retrySuccessRate) }),
    el("td", { class: "num", text: String(f.totalDeliveries) }),
    el("td", { class: "num", text: String(f.failedDeliveries) }),
    el("td", { class: "num", text: String(f.inFlight) }),
  ];
}

async function loadSla() {
  const body = $("sla-body");
  try {
    const { data } = await api("/v1/impact-in/sla-status", { params: { companyId: state.company } });
    $("sla-period").textContent = `${when(data.period.start)} – ${when(data.period.end)}`;
    const head = el("tr", {}, ["", "Status", "Success rate", "p95 latency", "Retry success", "Deliveries", "Failed", "In flight"].map((h) => el("th", { scope: "col", text: h })));
    const rows = [data.overall, ...data.byPlatform].map((f) =>
      el("tr", { "data-platform": f.platform || "overall" }, el("th", { scope: "row", text: platformName(f.platform) }), figureCells(f)),
    );
    const breaches = data.breaches.length
      ? el("ul", { class: "breaches" }, data.breaches.map((b) =>
          el("li", { text: `${platformName(b.platform)}: ${METRIC_TEXT[b.metric]?.[0] || b.metric} is ${metricValue(b.metric, b.value)} (bound ${metricValue(b.metric, b.threshold)})${b.capped ? ", too few samples to breach" : ""}` })))
      : el("p", { class: "muted", text: "No breaches." });
    clear(body,
      el("p", { class: "overall" }, "Overall: ", badge(data.slaStatus),
        el("span", { class: "muted", text: ` updated ${new Date().toLocaleTimeString()}` })),
      el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "SLA figures" }, el("table", { class: "sla", id: "sla-table" }, el("thead", {}, head), el("tbody", {}, rows))),
      el("h3", { text: "Breaches" }), breaches);
  } catch (err) {
    failure(body, err);
  }
}

// --- Charts: inline SVG, drawn from sla-daily -----------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function chart(platform, days) {
  const W = 320, H = 150, L = 34, B = 22, T = 10, R = 34;
  const innerW = W - L - R, innerH = H - T - B;
  const maxCount = Math.max(1, ...days.map((d) => d.total));
  const maxLatency = Math.max(1, ...days.map((d) => d.p95LatencyMs || 0));
  const step = innerW / Math.max(1, days.length);
  const barW = Math.max(2, Math.min(24, step * 0.7));
  const total = days.reduce((s, d) => s + d.total, 0);
  const failed = days.reduce((s, d) => s + d.failed, 0);
  const title = `${platformName(platform)}: ${total} deliveries over ${days.length} day(s), ${failed} failed`;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
  root.append(svg("title", {}, title));
  root.append(svg("line", { x1: L, y1: T + innerH, x2: W - R, y2: T + innerH, class: "axis" }));
  root.append(svg("text", { x: L - 4, y: T + 8, class: "tick", "text-anchor": "end" }, String(maxCount)));
  if (days.some((d) => d.p95LatencyMs !== null)) {
    root.append(svg("text", { x: W - R + 4, y: T + 8, class: "tick lat" }, ms(maxLatency)));
  }
  const points = [];
  days.forEach((d, i) => {
    const x = L + i * step + (step - barW) / 2;
    const okH = (d.successful / maxCount) * innerH;
    const failH = (d.failed / maxCount) * innerH;
    const other = d.total - d.successful - d.failed;
    const otherH = (other / maxCount) * innerH;
    let y = T + innerH;
    for (const [h, cls, n, label] of [[okH, "ok", d.successful, "successful"], [failH, "fail", d.failed, "failed"], [otherH, "pending", other, "in flight"]]) {
      if (h <= 0) continue;
      y -= h;
      const rect = svg("rect", { x, y, width: barW, height: h, class: cls });
      rect.append(svg("title", {}, `${d.date}: ${n} ${label}`));
      root.append(rect);
    }
    if (d.p95LatencyMs !== null) points.push(`${x + barW / 2},${T + innerH - (d.p95LatencyMs / maxLatency) * innerH}`);
    if (days.length <= 8 || i % Math.ceil(days.length / 6) === 0) {
      root.append(svg("text", { x: x + barW / 2, y: H - 6, class: "tick", "text-anchor": "middle" }, d.date.slice(5)));
    }
  });
  if (points.length > 1) root.append(svg("polyline", { points: points.join(" "), class: "latency" }));
  else if (points.length === 1) {
    const [cx, cy] = points[0].split(",");
    root.append(svg("circle", { cx, cy, r: 3, class: "latency-dot" }));
  }
  return el("figure", { class: "chart-box", "data-platform": platform },
    el("figcaption", {}, el("strong", { text: platformName(platform) }),
      el("span", { class: "legend" }, el("span", { class: "key ok" }), "successful ", el("span", { class: "key fail" }), "failed ", el("span", { class: "key lat" }), "p95 latency")),
    root);
}

async function loadCharts() {
  const body = $("charts-body");
  try {
    const params = { companyId: state.company };
    if (filters.from) params.startDate = filters.from;
    if (filters.to) params.endDate = filters.to;
    const { data } = await api("/v1/impact-in/sla-daily", { params });
    const charts = PLATFORMS.map((p) => [p, data.days.filter((d) => d.platform === p)])
      .filter(([, days]) => days.length)
      .map(([p, days]) => chart(p, days));
    clear(body, charts.length ? charts : el("p", { class: "muted", text: "No deliveries in the period." }));
  } catch (err) {
    failure(body, err);
  }
}

// --- Deliveries: the timeline with details and replays ---------------------------

const latencyOf = (d) => (d.deliveredAt ? new Date(d.deliveredAt) - new Date(d.createdAt) : null);
const canReplay = () => state.session?.canReplay === true;

async function loadDeliveries() {
  const body = $("deliveries-body");
  try {
    const params = { companyId: state.company, provider: filters.provider, status: filters.status, limit: filters.limit };
    if (filters.from) params.startDate = filters.from;
    if (filters.to) params.endDate = filters.to;
    const { data } = await api("/v1/impact-in/deliveries", { params });
    state.deliveries = data.data;
    state.selected.clear();
    renderDeliveries();
  } catch (err) {
    failure(body, err);
  }
}

function renderDeliveries() {
  const body = $("deliveries-body");
  updateSelected();
  if (!state.deliveries.length) {
    clear(body, el("p", { class: "muted", id: "no-deliveries", text: "No deliveries match." }));
    return;
  }
  const head = el("tr", {},
    canReplay() ? el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Select" })) : null,
    ["Created", "Platform", "Status", "Attempts", "Latency", "Provider status", ""].map((h) => el("th", { scope: "col", text: h })));
  const rows = state.deliveries.flatMap((d) => deliveryRows(d));
  clear(body, el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Deliveries" }, el("table", { class: "deliveries", id: "deliveries-table" }, el("thead", {}, head), el("tbody", {}, rows))));
}

function deliveryRows(d) {
  const detailsId = `details-${d.id}`;
  const toggle = el("button", { type: "button", class: "link", "aria-expanded": "false", "aria-controls": detailsId, text: "Details" });
  const details = el("tr", { id: detailsId, class: "details", hidden: true }, el("td", { colspan: canReplay() ? 8 : 7 }));
  toggle.addEventListener("click", () => toggleDetails(d, toggle, details));
  const actions = [toggle];
  if (canReplay() && d.status === "failed") {
    actions.push(el("button", { type: "button", class: "small", "data-replay": d.id, text: "Replay", onclick: () => replayOne(d) }));
  }
  const row = el("tr", { "data-id": d.id, "data-status": d.status },
    canReplay()
      ? el("td", {}, d.status === "failed"
        ? el("input", { type: "checkbox", "aria-label": `Select delivery ${d.deliveryId}`, checked: state.selected.has(d.id), onchange: (e) => select(d.id, e.target.checked) })
        : null)
      : null,
    el("td", { text: when(d.createdAt) }),
    el("td", { text: platformName(d.provider) }),
    el("td", {}, el("span", { class: `badge d-${d.status}`, text: d.status })),
    el("td", { class: "num", text: String(d.attemptCount) }),
    el("td", { class: "num", text: ms(latencyOf(d)) }),
    el("td", { text: d.providerStatus || "—" }),
    el("td", { class: "actions" }, actions));
  return [row, details];
}

function select(id, on) {
  if (on) state.selected.add(id); else state.selected.delete(id);
  updateSelected();
}

function updateSelected() {
  const n = state.selected.size;
  const button = $("replay-selected");
  if (!button) return;
  button.textContent = `Replay selected (${n})`;
  button.disabled = n === 0 || n > BULK_LIMIT;
}

// Values that look personal or secret are masked in the preview: by name,
// and by shape (e-mail addresses, long tokens).
const SECRET_NAME = /(e-?mail|phone|name|address|token|secret|password|passwd|key|ssn|iban|account|birth)/i;
const SECRET_SHAPE = /^[^@\s]+@[^@\s]+\.[^@\s]+$|^[A-Za-z0-9+/_=-]{32,}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function mask(value, key = "") {
  if (Array.isArray(value)) return value.map((v) => mask(v, key));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mask(v, k)]));
  }
  if (typeof value === "string" && (SECRET_NAME.test(key) || (SECRET_SHAPE.test(value) && !UUID.test(value)))) return "•••";
  if (typeof value === "number" && SECRET_NAME.test(key) && !/count|hours/i.test(key)) return "•••";
  return value;
}

async function toggleDetails(d, toggle, row) {
  const open = toggle.getAttribute("aria-expanded") === "true";
  toggle.setAttribute("aria-expanded", String(!open));
  row.hidden = open;
  if (open) return;
  const cell = row.firstChild;
  clear(cell, el("p", { class: "muted", text: "Loading…" }));
  try {
    const { data } = await api(`/v1/impact-in/deliveries/${d.id}`);
    const facts = [
      ["Record id", data.id], ["deliveryId", data.deliveryId], ["Company", data.companyId],
      ["Created", when(data.createdAt)], ["Updated", when(data.updatedAt)], ["Delivered", when(data.deliveredAt)],
      ["Next attempt", when(data.nextAttemptAt)], ["Schedule", data.scheduleId || "—"],
      ["From cache", data.fromCache ? "yes" : "no"], ["Last error", data.lastError || "—"],
    ];
    const attempts = data.attempts.length
      ? el("table", { class: "attempts" },
          el("thead", {}, el("tr", {}, ["#", "Trigger", "Started", "Duration", "HTTP", "Error"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, data.attempts.map((a) => el("tr", {},
            el("td", { text: String(a.attemptNumber) }), el("td", { text: a.trigger }), el("td", { text: when(a.startedAt) }),
            el("td", { text: ms(a.durationMs) }), el("td", { text: a.httpStatus ?? "—" }),
            el("td", { text: [a.errorClass, a.error].filter(Boolean).join(": ") || "—" })))))
      : el("p", { class: "muted", text: "No attempt yet." });
    const events = data.events.length
      ? el("ul", {}, data.events.map((e) => el("li", { text: `${when(e.receivedAt)}: ${e.eventType} → ${e.providerStatus || "—"} (${e.outcome})` })))
      : el("p", { class: "muted", text: "No provider webhook yet." });
    clear(cell,
      el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
      el("h4", { text: "Attempts" }), attempts,
      el("h4", { text: "Provider status events" }), events,
      el("h4", { text: "Provider response" }),
      el("pre", { tabindex: "0", "aria-label": "Provider response", text: data.providerResponse ? JSON.stringify(mask(data.providerResponse), null, 2) : "—" }),
      el("h4", { text: "Payload (personal and secret-looking values masked)" }),
      el("pre", { class: "payload", tabindex: "0", "aria-label": "Payload preview", text: JSON.stringify(mask(data.payload), null, 2) }));
  } catch (err) {
    failure(cell, err);
  }
}

// --- Replays: confirmation, then live status until each is settled -----------------

function confirmDialog(title, text, action) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").onclick = null;
      $("confirm-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

async function replayOne(d) {
  const ok = await confirmDialog("Replay this delivery?",
    `Delivery ${d.deliveryId} to ${platformName(d.provider)} failed after ${d.attemptCount} attempt(s). ` +
    `It will be sent to ${platformName(d.provider)} again now, under the same deliveryId (the provider de-duplicates on it).`,
    "Replay 1 delivery");
  if (!ok) return;
  say(`Replaying ${d.deliveryId}…`);
  try {
    await api(`/v1/impact-in/deliveries/${d.id}/replay`, { method: "POST" });
  } catch (err) {
    if (err.status !== 409) return say(`Replay failed: ${err.message}`);
  }
  await follow([d.id]);
}

async function replaySelected() {
  const ids = [...state.selected];
  if (!ids.length) return;
  const ok = await confirmDialog(`Replay ${ids.length} deliveries?`,
    `The ${ids.length} selected failed deliver${ids.length === 1 ? "y" : "ies"} will be sent to their providers again now, each under its own deliveryId.`,
    `Replay ${ids.length}`);
  if (!ok) return;
  say(`Replaying ${ids.length} deliveries…`);
  try {
    await api("/v1/impact-in/deliveries/bulk-replay", { method: "POST", body: { ids } });
  } catch (err) {
    return say(`Replay failed: ${err.message}`);
  }
  state.selected.clear();
  await follow(ids);
}

async function retryAll() {
  if (!state.company) return say("Choose a company first: retry all works per company.");
  let count = "every";
  try {
    const { data } = await api("/v1/impact-in/deliveries", { params: { companyId: state.company, status: "failed", limit: 1 } });
    count = String(data.pagination?.total ?? "every");
  } catch { /* the count is only for the question */ }
  const ok = await confirmDialog("Retry all failed deliveries?",
    `All ${count} failed deliveries of company ${state.company} will be queued again; the workers send them over the next minutes.`,
    `Retry ${count} failed`);
  if (!ok) return;
  try {
    const { data } = await api("/v1/impact-in/deliveries/retry-all-failed", { method: "POST", body: { companyId: state.company } });
    say(`${data.queued} failed deliveries queued again.`);
  } catch (err) {
    return say(`Retry all failed: ${err.message}`);
  }
  await follow(state.deliveries.filter((d) => d.status === "failed").map((d) => d.id));
}

// Polls the replayed deliveries, updating their rows, until none is pending
// or retrying (or POLL_LIMIT polls).
async function follow(ids) {
  for (let n = 0; n < POLL_LIMIT && ids.length; n++) {
    const fresh = await Promise.all(ids.map((id) => api(`/v1/impact-in/deliveries/${id}`).then((r) => r.data).catch(() => null)));
    for (const d of fresh.filter(Boolean)) {
      const i = state.deliveries.findIndex((x) => x.id === d.id);
      if (i >= 0) state.deliveries[i] = d;
    }
    renderDeliveries();
    const open = fresh.filter((d) => d && (d.status === "pending" || d.status === "retrying"));
    const counts = fresh.filter(Boolean).reduce((c, d) => ({ ...c, [d.status]: (c[d.status] || 0) + 1 }), {});
    say(`Replay: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")}${open.length ? "…" : "."}`);
    if (!open.length) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  loadSla();
  loadCharts();
}

// --- Schedules ----------------------------------------------------------------------

async function loadSchedules() {
  const body = $("schedules-body");
  try {
    const { data } = await api("/v1/impact-in/schedules", { params: { companyId: state.company, limit: 100 } });
    const list = data.data;
    if (!list.length) return clear(body, el("p", { class: "muted", text: "No schedules." }));
    const nextRun = (s) => (s.nextRun
      ? `${new Date(s.nextRun).toLocaleString(undefined, { timeZone: s.timezone, dateStyle: "medium", timeStyle: "short" })} (${s.timezone})`
      : "—");
    clear(body, el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Schedules" }, el("table", { class: "schedules" },
      el("thead", {}, el("tr", {}, ["Platform", "Schedule", "Next run", "Last status", "Consecutive failures", ""].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, list.map((s) => el("tr", { "data-id": s.id },
        el("td", { text: platformName(s.platform) }),
        el("td", { text: `${s.preset || s.schedule}${s.active ? "" : " (paused)"}` }),
        el("td", { text: nextRun(s) }),
        el("td", { text: s.lastStatus || "—" }),
        el("td", { class: "num", text: String(s.consecutiveFailures) }),
        el("td", {}, canReplay() ? el("button", { type: "button", class: "small", text: "Run now", onclick: () => runNow(s) }) : null)))))));
  } catch (err) {
    failure(body, err);
  }
}

async function runNow(s) {
  const ok = await confirmDialog("Run this schedule now?",
    `The ${platformName(s.platform)} export of this schedule runs now, once, for its current period; its regular runs are not changed.`,
    "Run now");
  if (!ok) return;
  try {
    const { data } = await api(`/v1/impact-in/schedules/${s.id}/run`, { method: "POST" });
    say(data.outcome === "enqueued"
      ? `Run now: a ${platformName(s.platform)} delivery is queued (deliveryId ${data.deliveryId}).`
      : `Run now: skipped${data.reason ? `, ${data.reason}` : ""}.`);
  } catch (err) {
    say(`Run now failed: ${err.message}`);
  }
  loadSchedules();
  loadDeliveries();
}

// --- For ops ------------------------------------------------------------------------

async function loadOps() {
  const unmatched = $("unmatched-body");
  try {
    const { data } = await api("/v1/impact-in/webhook-events", { params: { companyId: state.company, matched: "false", limit: 20 } });
    clear(unmatched, data.data.length
      ? el("ul", { class: "plain" }, data.data.map((e) => el("li", { text: `${when(e.receivedAt)} · ${platformName(e.provider)} · ${e.eventType} · event ${e.eventId}` })))
      : el("p", { class: "muted", text: "None." }));
  } catch (err) {
    failure(unmatched, err);
  }
  const rejected = $("rejected-body");
  try {
    const { data } = await api("/v1/impact-in/bus/rejected", { params: { companyId: state.company, limit: 20 } });
    clear(rejected, data.data.length
      ? el("ul", { class: "plain" }, data.data.map((r) => el("li", { text: `${when(r.rejectedAt)} · ${r.reasonCode}: ${r.reason} (stream ${r.stream} #${r.streamSequence})` })))
      : el("p", { class: "muted", text: "None." }));
  } catch (err) {
    failure(rejected, err);
  }
}

// --- Wiring ---------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-input").value = "";
  start();
});
$("sign-out").addEventListener("click", () => signOut("Signed out."));
$("sla-refresh").addEventListener("click", loadSla);
$("company-select").addEventListener("change", (e) => companyChanged(e.target.value));
$("company-input").addEventListener("change", (e) => companyChanged(e.target.value));
$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  for (const name of Object.keys(filters)) filters[name] = form.elements[name].value;
  writeUrl();
  loadDeliveries();
  loadCharts();
});
$("filters-clear").addEventListener("click", () => {
  for (const name of Object.keys(filters)) filters[name] = name === "limit" ? "30" : "";
  for (const name of Object.keys(filters)) $("filters").elements[name].value = filters[name];
  writeUrl();
  loadDeliveries();
  loadCharts();
});
$("replay-selected")?.addEventListener("click", replaySelected);
$("retry-all")?.addEventListener("click", retryAll);
window.addEventListener("popstate", () => {
  if (!state.session) return;
  readFilters();
  loadDeliveries();
  loadCharts();
});

start();
