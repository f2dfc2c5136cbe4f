// The web UI in real headless Chromium, driven by playwright-core.
// argv: BASE_URL TOKEN OUT_DIR. Env: ZOCALO_TEST_NODE_MODULES, ZOCALO_CHROMIUM.
// Prints one JSON document of what the page showed; screenshots go to OUT_DIR.
import { createRequire } from "node:module";
import path from "node:path";

const [base, token, out] = process.argv.slice(2);
const require = createRequire(path.join(process.env.ZOCALO_TEST_NODE_MODULES, "/"));
const { chromium } = require("playwright-core");

const result = { console_errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.ZOCALO_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  // Failed resource loads are expected here (the wrong-token 401, the optional pages' 404
  // probes, the favicon); script errors are not.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) result.console_errors.push(m.text()); });
  page.on("pageerror", (e) => result.console_errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: path.join(out, `${name}.png`) });

  await page.goto(base + "/");
  await page.waitForSelector("#signin:not(.hidden)");
  await shot("signin");
  // A wrong token is refused.
  await page.fill("#token", "wrong-token");
  await page.click("#signin-btn");
  await page.waitForFunction(() => document.querySelector("#signin-error").textContent.length > 0);
  result.wrong_token_error = await page.textContent("#signin-error");
  // The right one signs in.
  await page.fill("#token", token);
  await page.click("#signin-btn");
  await page.waitForSelector("#app:not(.hidden)");
  result.signed_in = true;

  // Chat: watch the answer bubble grow while it streams.
  await page.evaluate(() => {
    window.__seen = [];
    new MutationObserver(() => {
      const b = document.querySelector(".msg.assistant:last-child .bubble");
      if (b && b.textContent && window.__seen[window.__seen.length - 1] !== b.textContent) window.__seen.push(b.textContent);
    }).observe(document.querySelector("#thread"), { subtree: true, childList: true, characterData: true });
  });
  await page.fill("#message", "Tell me about the zocalo");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".msg.assistant:not(.streaming)", { timeout: 20000 });
  result.answer = await page.textContent(".msg.assistant .bubble");
  result.partials = await page.evaluate(() => window.__seen);
  await page.waitForSelector("#conv-list li");
  result.conversations = await page.$$eval("#conv-list li", (lis) => lis.length);
  await shot("chat");

  // Memory: add, then find it.
  await page.click('a[data-page="memory"]');
  await page.waitForSelector("#page-memory:not(.hidden)");
  await page.fill("#memory-text", "The user's favourite colour is teal");
  await page.click('#memory-add button[type="submit"]');
  await page.waitForFunction(() => /1 memories/.test(document.querySelector("#memory-stats").textContent));
  await page.fill("#memory-q", "favourite colour");
  await page.click('#memory-search button[type="submit"]');
  await page.waitForSelector("#memory-results li.hit");
  result.memory_hits = await page.$$eval("#memory-results li.hit", (lis) => lis.map((l) => l.textContent));
  await shot("memory");

  // Schedules: preview, add, see the next occurrences.
  await page.click('a[data-page="schedules"]');
  await page.waitForSelector("#page-schedules:not(.hidden)");
  await page.fill("#sched-name", "morning-brief");
  await page.fill("#sched-rrule", "FREQ=DAILY;BYHOUR=7;BYMINUTE=30");
  await page.fill("#sched-start", "2026-01-01T07:30:00");
  await page.fill("#sched-tz", "Europe/Berlin");
  await page.fill("#sched-ask", "Summarise my day");
  await page.click("#sched-preview");
  await page.waitForFunction(() => document.querySelector("#sched-preview-out").textContent.startsWith("Next:"));
  result.preview = await page.textContent("#sched-preview-out");
  await page.click('#sched-add button[type="submit"]');
  await page.waitForSelector("#sched-list .sched");
  result.schedule_occurrences = await page.$$eval("#sched-list .occurrences span", (s) => s.length);
  await shot("schedules");

  // Jobs and nodes.
  await page.click('a[data-page="jobs"]');
  await page.waitForSelector("#page-jobs:not(.hidden)");
  await page.waitForSelector("#job-rows tr td.mono");
  result.job_rows = await page.$$eval("#job-rows tr td.mono", (t) => t.length);
  result.stat_queued = await page.textContent("#job-stats .stat:first-child .n");
  await shot("jobs");

  // Each optional page that this build serves.
  result.optional_pages = {};
  for (const name of ["agents", "services"]) {
    const visible = await page.isVisible(`#nav-${name}`);
    result.optional_pages[name] = visible;
    if (visible) {
      await page.click(`a[data-page="${name}"]`);
      await page.waitForSelector(`#page-${name}:not(.hidden)`);
      if (name === "agents") {
        // Spawn a batch of two from the page and watch it finish.
        await page.fill("#agents-prompts", "First question\nSecond question");
        await page.fill("#agents-concurrency", "2");
        await page.click('#agents-spawn button[type="submit"]');
        await page.waitForFunction(() => document.querySelector("#agents-spawn-out").textContent.startsWith("Started batch_"));
        result.agents_started = await page.textContent("#agents-spawn-out");
        await page.waitForFunction(() => /2\/2 ok/.test(document.querySelector("#agent-batches").textContent), null, { timeout: 20000 });
        result.agents_batches = await page.$$eval("#agent-batches .name", (n) => n.length);
        result.agents_text = await page.textContent("#agent-batches");
      }
      if (name === "services") {
        // The service the test started: its state, then its log.
        await page.waitForSelector("#service-list .pill");
        result.services = await page.$$eval("#service-list .name", (n) => n.map((x) => x.textContent));
        result.service_states = await page.$$eval("#service-list .pill", (p) => p.map((x) => x.textContent));
        await page.click("#service-list button:has-text('logs')");
        await page.waitForSelector("#service-logs:not(.hidden)");
        result.service_logs = await page.textContent("#service-logs");
      }
      await shot(name);
    }
  }
  // Sign out returns to the sign-in card.
  await page.click("#signout");
  await page.waitForSelector("#signin:not(.hidden)");
  result.signed_out = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
