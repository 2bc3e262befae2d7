// The delivery console in headless Chromium (Debian's), against the real
// service, Postgres and the provider sandbox that scripts/contract-check.sh
// started. Run by it as:
//   BASE_URL=… COMPANY=… TOKEN=… READONLY_TOKEN=… SANDBOX_URL=… SERVICE_LOG=… \
//     node tests/browser/console.mjs
// COMPANY is fresh (no deliveries): this script creates its known data
// through the API. SCREENSHOTS=dir also saves the views shown in
// docs/console.md. Exits 0 when every step passed, else 1 naming them.

import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`console.mjs: set ${name}`);
    process.exit(2);
  }
  return value;
};
const base = env("BASE_URL");
const company = env("COMPANY");
const token = env("TOKEN");
const readonlyToken = env("READONLY_TOKEN");
const sandbox = env("SANDBOX_URL");
const serviceLog = process.env.SERVICE_LOG;
const screenshots = process.env.SCREENSHOTS;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const TIMEOUT_MS = 30_000;
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

// --- The known data: 8 deliveries, 4 of them refused by Goodera ---------------

async function call(path, { method = "GET", body, bearer = token } = {}) {
  const response = await fetch(new URL(path, base), {
    method,
    headers: { Authorization: `Bearer ${bearer}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function report(n) {
  return {
    companyId: company,
    period: { start: "2026-01-01", end: "2026-03-31" },
    volunteerHours: 100 + n,
    volunteerCount: 10 + n,
    participantCount: 40 + n,
    sessionCount: 5 + n,
    // A name: the payload preview masks it.
    programmes: [{ name: `Ada Lovelace mentoring ${n}`, volunteerHours: 1.0, participantCount: 1, donations: [] }],
  };
}

async function seed() {
  const faults = await fetch(`${sandbox}/_sandbox/faults`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ provider: "goodera", count: 4, status: 400 }),
  });
  if (!faults.ok) throw new Error(`sandbox faults: ${faults.status}`);
  const plan = ["goodera", "goodera", "goodera", "goodera", "benevity", "benevity", "workday", "workday"];
  const ids = [];
  for (const [n, provider] of plan.entries()) {
    const created = await call("/v1/impact-in/deliveries", {
      method: "POST",
      body: { companyId: company, provider, payload: report(n) },
    });
    ids.push(created.id);
  }
  await call("/v1/impact-in/schedules", {
    method: "POST",
    body: { companyId: company, platform: "benevity", schedule: "0 9 * * 1-5", timezone: "America/New_York" },
  });
  // Every one final before the page looks.
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const page = await call(`/v1/impact-in/deliveries?companyId=${company}&limit=100`);
    const open = page.data.filter((d) => d.status === "pending" || d.status === "retrying");
    if (page.data.length === plan.length && !open.length) return page.data;
    if (Date.now() > deadline) throw new Error(`deliveries not final: ${JSON.stringify(page.data.map((d) => d.status))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// --- Steps ---------------------------------------------------------------------

const results = [];
async function step(name, fn) {
  try {
    await fn();
    results.push([name, null]);
    console.log(`ok   ${name}`);
  } catch (err) {
    results.push([name, err]);
    console.log(`FAIL ${name}: ${err.message ?? err}`);
  }
}
function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
  timeout: TIMEOUT_MS,
});
const requestUrls = [];
const pageErrors = [];

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(TIMEOUT_MS);
  // Offline: only the service on 127.0.0.1 is reachable.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    return url.hostname === "127.0.0.1" ? route.continue() : route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  page.on("request", (req) => requestUrls.push(req.url()));
  page.on("pageerror", (err) => pageErrors.push(`uncaught: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") pageErrors.push(`console: ${msg.text()}`);
  });
  return { context, page };
}

const signIn = async (page, bearer, query = "") => {
  await page.goto(`${base}/console${query}#token=${encodeURIComponent(bearer)}`);
  await page.locator("#who-text").waitFor({ state: "visible" });
};

const rowStatuses = (page) =>
  page.locator("#deliveries-table tbody tr[data-id]").evaluateAll((rows) => rows.map((r) => r.dataset.status));

async function waitForStatuses(page, predicate, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const statuses = await rowStatuses(page);
    if (predicate(statuses)) return statuses;
    if (Date.now() > deadline) throw new Error(`${what}: rows are ${JSON.stringify(statuses)}`);
    await page.waitForTimeout(200);
  }
}

let seeded = [];
await step("seed: 8 deliveries through the API, 4 refused by the sandbox's Goodera", async () => {
  seeded = await seed();
  const failed = seeded.filter((d) => d.status === "failed").length;
  check(failed === 4, `expected 4 failed, got ${failed}`);
});

const { context: writer, page } = await newPage();

await step("sign in through the fragment link: the token leaves the address bar for sessionStorage", async () => {
  await signIn(page, token);
  check(!page.url().includes("token"), `address bar still shows it: ${page.url()}`);
  const stored = await page.evaluate(() => sessionStorage.getItem("impact-in.token"));
  check(stored === token, "the token is not in sessionStorage");
  const who = await page.locator("#who-text").innerText();
  check(/roles: .*ADMIN_CONSOLE.*MANAGE_INTEGRATIONS/.test(who), `who: ${who}`);
  check((await page.locator("#company-select").inputValue()) === company, "the token's company is chosen");
});

await step("the SLA widget shows the figures of the known data, status in text", async () => {
  const overall = page.locator('#sla-table tr[data-platform="overall"]');
  await overall.waitFor();
  const cells = await overall.locator("td").allInnerTexts();
  // 4 of 8 finished deliveries succeeded.
  check(cells[1] === "50.00 %", `overall success rate ${cells[1]}`);
  check(["Healthy", "Warning", "Breach"].includes(cells[0]), `status text ${cells[0]}`);
  check(cells[4] === "8" && cells[5] === "4", `deliveries/failed ${cells[4]}/${cells[5]}`);
  const goodera = await page.locator('#sla-table tr[data-platform="goodera"] td').allInnerTexts();
  check(goodera[1] === "0.00 %", `goodera success rate ${goodera[1]}`);
  const benevity = await page.locator('#sla-table tr[data-platform="benevity"] td').allInnerTexts();
  check(benevity[1] === "100.00 %", `benevity success rate ${benevity[1]}`);
});

await step("the charts draw each platform's day from sla-daily", async () => {
  await page.locator("#charts-body figure").first().waitFor();
  const platforms = await page.locator("#charts-body figure").evaluateAll((f) => f.map((x) => x.dataset.platform));
  check(platforms.join() === "benevity,goodera,workday", `charts for ${platforms}`);
  const label = await page.locator('#charts-body figure[data-platform="goodera"] svg').getAttribute("aria-label");
  check(/4 deliveries .* 4 failed/.test(label), `goodera chart: ${label}`);
});

await step("the timeline lists the newest deliveries with status and attempts", async () => {
  const statuses = await waitForStatuses(page, (s) => s.length === 8, "8 rows");
  check(statuses.filter((s) => s === "failed").length === 4, `statuses ${statuses}`);
});

if (screenshots) await page.screenshot({ path: `${screenshots}/console-desktop.png`, fullPage: true });

await step("filters change the timeline and the URL (without the token)", async () => {
  await page.locator('#filters select[name="status"]').selectOption("failed");
  await page.locator('#filters select[name="provider"]').selectOption("goodera");
  await page.locator('#filters button[type="submit"]').click();
  await waitForStatuses(page, (s) => s.length === 4 && s.every((x) => x === "failed"), "only failed");
  const url = new URL(page.url());
  check(url.searchParams.get("status") === "failed" && url.searchParams.get("provider") === "goodera", `url ${page.url()}`);
  check(!page.url().includes(token), "the token is in the URL");
  // The shared view opens the same way in a new tab.
  await page.reload();
  await waitForStatuses(page, (s) => s.length === 4, "the same view after a reload");
  check((await page.locator('#filters select[name="status"]').inputValue()) === "failed", "filter kept");
});

await step("details expand with ids, attempts and a masked payload preview", async () => {
  const toggle = page.locator("#deliveries-table button[aria-expanded]").first();
  await toggle.click();
  check((await toggle.getAttribute("aria-expanded")) === "true", "aria-expanded");
  const details = page.locator("#deliveries-table tr.details:not([hidden])");
  await details.locator("table.attempts").waitFor();
  const text = await details.innerText();
  check(text.includes("deliveryId") && text.includes("Attempts"), "ids and attempts shown");
  check(/HTTP|400/.test(text), "the attempt's error shown");
  check(text.includes("volunteerHours"), "payload preview shown");
  const preview = await details.locator("pre.payload").innerText();
  check(!preview.includes("Ada Lovelace") && preview.includes('"name": "•••"'), "the programme's name is masked");
  check(preview.includes(`"companyId": "${company}"`), "ids are not masked");
  if (screenshots) await page.screenshot({ path: `${screenshots}/console-details.png`, fullPage: true });
  await toggle.click();
});

await step("keyboard: a replay button opens the confirmation, Escape cancels", async () => {
  const button = page.locator("#deliveries-table button[data-replay]").first();
  await button.focus();
  await page.keyboard.press("Enter");
  await page.locator("#confirm[open]").waitFor();
  const focused = await page.evaluate(() => document.activeElement?.id);
  check(focused === "confirm-cancel", `focus on ${focused}`);
  await page.keyboard.press("Escape");
  await page.locator("#confirm:not([open])").waitFor({ state: "attached" });
  const statuses = await rowStatuses(page);
  check(statuses.every((s) => s === "failed"), "nothing replayed on cancel");
});

await step("a failed delivery replayed from the page turns success", async () => {
  const row = page.locator("#deliveries-table tbody tr[data-id]").first();
  const id = await row.getAttribute("data-id");
  await row.locator("button[data-replay]").click();
  await page.locator("#confirm[open] #confirm-title", { hasText: "Replay this delivery?" }).waitFor();
  const text = await page.locator("#confirm-text").innerText();
  check(/sent to Goodera again/.test(text), `confirmation says ${text}`);
  await page.locator("#confirm-ok").click();
  await page.locator(`#deliveries-table tr[data-id="${id}"][data-status="success"]`).waitFor();
  const api = await call(`/v1/impact-in/deliveries/${id}`);
  check(api.status === "success" && api.attempts.at(-1).trigger === "replay", `API says ${api.status}`);
});

await step("bulk replay of the selected, with a confirmation that counts them", async () => {
  const boxes = page.locator('#deliveries-table tr[data-status="failed"] input[type="checkbox"]');
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  const label = await page.locator("#replay-selected").innerText();
  check(label === "Replay selected (2)", label);
  await page.locator("#replay-selected").click();
  await page.locator("#confirm[open] #confirm-title", { hasText: "Replay 2 deliveries?" }).waitFor();
  await page.locator("#confirm-ok").click();
  await waitForStatuses(page, (s) => s.filter((x) => x === "success").length === 3, "3 success");
});

await step("retry all failed, confirmed with the count, reaches the last one", async () => {
  await page.locator("#retry-all").click();
  // It counts the failed deliveries first, then asks.
  await page.locator("#confirm[open] #confirm-title", { hasText: "Retry all failed" }).waitFor();
  const text = await page.locator("#confirm-text").innerText();
  check(text.includes("All 1 failed"), `confirmation says ${text}`);
  await page.locator("#confirm-ok").click();
  await waitForStatuses(page, (s) => s.length === 4 && s.every((x) => x === "success"), "all success");
  const page2 = await call(`/v1/impact-in/deliveries?companyId=${company}&status=failed`);
  check(page2.data.length === 0, "none failed in the API");
});

await step("axe-core finds no serious or critical violation", async () => {
  const { context, page: audited } = await newPage({ bypassCSP: true });
  await signIn(audited, token);
  await audited.locator('#sla-table tr[data-platform="overall"]').waitFor();
  await audited.locator("#deliveries-table").waitFor();
  await audited.locator("#deliveries-table button[aria-expanded]").first().click();
  await audited.locator("#deliveries-table tr.details:not([hidden]) table.attempts").waitFor();
  await audited.addScriptTag({ content: axeSource });
  const { violations } = await audited.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(!serious.length, serious.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`).join(" | "));
  await context.close();
});

await step("360 px wide: nothing wider than the screen but the tables' own scroll", async () => {
  const { context, page: narrow } = await newPage({ viewport: { width: 360, height: 740 } });
  await signIn(narrow, token);
  await narrow.locator('#sla-table tr[data-platform="overall"]').waitFor();
  await narrow.locator("#deliveries-table").waitFor();
  const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 360, `the page is ${width}px wide`);
  if (screenshots) await narrow.screenshot({ path: `${screenshots}/console-mobile.png`, fullPage: true });
  await context.close();
});

await step("schedules show the next run in the schedule's zone, and run now answers what it did", async () => {
  const row = page.locator("#schedules-body tbody tr").first();
  await row.waitFor();
  const cells = await row.locator("td").allInnerTexts();
  check(cells[0] === "Benevity" && cells[2].includes("(America/New_York)") && cells[4] === "0", `row ${cells}`);
  await row.locator("button", { hasText: "Run now" }).click();
  await page.locator("#confirm[open] #confirm-title", { hasText: "Run this schedule now?" }).waitFor();
  await page.locator("#confirm-ok").click();
  // No ingested data for this company: the firing is skipped, and says so.
  await page.locator("#status", { hasText: "Run now: skipped" }).waitFor();
});

await step("a read-only token sees no replay controls at all", async () => {
  const { context, page: reader } = await newPage();
  await signIn(reader, readonlyToken);
  await reader.locator("#deliveries-table").waitFor();
  check((await reader.locator("#replay-bar").count()) === 0, "the replay bar is there");
  check((await reader.locator("button[data-replay], #deliveries-table input[type=checkbox]").count()) === 0, "row controls are there");
  check((await reader.locator("#schedules-body button").count()) === 0, "run-now is there");
  const who = await reader.locator("#who-text").innerText();
  check(!who.includes("MANAGE_INTEGRATIONS"), who);
  await context.close();
});

await step("sign out forgets the token", async () => {
  await page.locator("#sign-out").click();
  await page.locator("#sign-in").waitFor({ state: "visible" });
  const stored = await page.evaluate(() => sessionStorage.getItem("impact-in.token"));
  check(stored === null, "still stored");
});

await step("the token never appeared in a request URL, and never in the server log", async () => {
  const leaked = requestUrls.filter((u) => u.includes(token) || u.includes(readonlyToken));
  check(!leaked.length, `in ${leaked.slice(0, 3).join(", ")}`);
  const offHost = requestUrls.filter((u) => new URL(u).hostname !== "127.0.0.1");
  check(!offHost.length, `requests off the host: ${offHost.slice(0, 3).join(", ")}`);
  if (serviceLog && existsSync(serviceLog)) {
    const log = readFileSync(serviceLog, "utf8");
    check(!log.includes(token) && !log.includes(readonlyToken), "the server log holds a token");
  }
});

await step("no error in the page", async () => {
  check(!pageErrors.length, pageErrors.join(" | "));
});

await writer.close();
await browser.close();

const failedSteps = results.filter(([, err]) => err);
console.log(`console: ${results.length - failedSteps.length}/${results.length} steps passed`);
process.exit(failedSteps.length ? 1 : 0);
