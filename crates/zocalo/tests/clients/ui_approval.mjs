// The chat page's approval buttons in real headless Chromium (playwright-core).
// argv: BASE_URL TOKEN OUT_DIR. Env: ZOCALO_TEST_NODE_MODULES, ZOCALO_CHROMIUM.
// Prints one JSON document: what the approval box said, and the answer after "Allow".
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
  page.on("pageerror", (e) => result.console_errors.push(String(e)));
  await page.goto(base + "/");
  await page.waitForSelector("#signin:not(.hidden)");
  await page.fill("#token", token);
  await page.click("#signin-btn");
  await page.waitForSelector("#app:not(.hidden)");
  await page.fill("#message", "Run the command");
  await page.keyboard.press("Enter");
  // The ask waits on the box until a button is pressed.
  await page.waitForSelector(".approval button[data-decision='allow']", { timeout: 20000 });
  result.box = await page.textContent(".approval");
  await page.screenshot({ path: path.join(out, "approval.png") });
  await page.click(".approval button[data-decision='allow']");
  await page.waitForSelector(".msg.assistant:not(.streaming)", { timeout: 20000 });
  result.answer = await page.textContent(".msg.assistant .bubble");
  result.box_after = await page.textContent(".approval");
  await page.screenshot({ path: path.join(out, "approved.png") });
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
