// /docs/ renders offline: Debian's Chromium, headless, loads Swagger UI from
// the running service with every request that is not to 127.0.0.1 aborted,
// and must show the operations of the spec. Run by scripts/contract-check.sh:
//   DOCS_URL=http://127.0.0.1:PORT/docs/ node tests/browser/docs.mjs
// Exits 0 when the route list is shown and nothing else was asked for;
// otherwise 1 with what went wrong.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const docsUrl = process.env.DOCS_URL;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
// An operation the page must list, and the least number of operations.
const expectedPath = "/v1/impact-in/deliveries";
const TIMEOUT_MS = 30_000;

if (!docsUrl) {
  console.error("docs.mjs: set DOCS_URL, e.g. http://127.0.0.1:3007/docs/");
  process.exit(2);
}

const offHost = []; // requests to another host, aborted
const failed = []; // requests to the service that failed or answered >= 400
const pageErrors = []; // uncaught exceptions and console errors

const userDataDir = mkdtempSync(join(tmpdir(), "impact-in-chromium-"));
let context;
let problems = [];
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: TIMEOUT_MS,
  });
  // Offline: only the service on 127.0.0.1 is reachable.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1") return route.continue();
    offHost.push(route.request().url());
    return route.abort("blockedbyclient");
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (err) => pageErrors.push(`uncaught: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") pageErrors.push(`console: ${msg.text()}`);
  });
  page.on("requestfailed", (req) => {
    if (new URL(req.url()).hostname === "127.0.0.1") {
      failed.push(`${req.url()}: ${req.failure()?.errorText}`);
    }
  });
  page.on("response", (res) => {
    if (res.status() >= 400) failed.push(`${res.url()}: HTTP ${res.status()}`);
  });

  const response = await page.goto(docsUrl, { waitUntil: "load", timeout: TIMEOUT_MS });
  if (!response || !response.ok()) {
    problems.push(`GET ${docsUrl} answered ${response ? response.status() : "nothing"}`);
  }
  const operation = page.locator(
    `.opblock .opblock-summary-path[data-path="${expectedPath}"]`,
  );
  try {
    await operation.first().waitFor({ state: "visible", timeout: TIMEOUT_MS });
  } catch {
    const text = (await page.locator("body").innerText().catch(() => "")).slice(0, 500);
    problems.push(
      `no operation for ${expectedPath} within ${TIMEOUT_MS / 1000}s; the page shows: ${JSON.stringify(text)}`,
    );
  }
  // Every operation of the spec the page loaded is listed.
  const spec = await (await context.request.get(new URL("/openapi.json", docsUrl).href)).json();
  const methods = new Set(["get", "put", "post", "delete", "patch", "head", "options", "trace"]);
  const expected = Object.values(spec.paths).flatMap((item) =>
    Object.keys(item).filter((key) => methods.has(key)),
  ).length;
  const shown = await page.locator(".opblock").count();
  if (shown !== expected) {
    problems.push(`the page lists ${shown} operations, the spec has ${expected}`);
  }
  const title = await page.locator(".info .title").first().innerText().catch(() => "");
  if (!title.includes("Impact-In")) problems.push(`title ${JSON.stringify(title)}, expected Impact-In`);

  if (offHost.length) problems.push(`requests to other hosts (aborted): ${offHost.join(", ")}`);
  if (failed.length) problems.push(`requests to the service that failed: ${failed.join(", ")}`);
  if (pageErrors.length) problems.push(`errors in the page: ${pageErrors.join(" | ")}`);
  if (!problems.length) {
    console.log(`docs: ${docsUrl} lists ${shown} operations offline (${expectedPath} among them)`);
  }
} catch (err) {
  problems.push(`${err.message ?? err}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

if (problems.length) {
  console.error(`docs check FAILED for ${docsUrl}:`);
  for (const problem of problems) console.error(`  - ${problem}`);
  process.exit(1);
}
