// Terminals in the browser: two at once on different pods, the container's
// environment on screen, resizes that reach the process, and a dropped
// connection that comes back with nothing lost and nothing twice.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, Page, WebSocketRoute } from "playwright-core";

import { deleteNamespace, launch, namespace, openTerminal, screenText, shellReady, shot, startConsole, statusLine, typeInto, waitFor, type Console } from "./harness.ts";

let ns: string;
let ui: Console;
let browser: Browser;
let page: Page;
const routes: WebSocketRoute[] = [];

before(async () => {
  ns = await namespace("browser-terms", ["pod-a", "pod-b"]);
  ui = await startConsole("alice", ns);
  browser = await launch();
  // The clipboard as a person's browser has it once the page may use it.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, permissions: ["clipboard-read", "clipboard-write"] });
  page = await ctx.newPage();
  // Every attach passes through this route so that the test can cut it
  // like a network drop; until then frames pass unchanged.
  await page.routeWebSocket(/\/attach\?/, (ws) => {
    ws.connectToServer();
    routes.push(ws);
  });
  await page.goto(ui.url);
  await page.getByRole("treeitem", { name: /^pod-a\b/ }).waitFor();
});

after(async () => {
  await browser?.close();
  ui?.stop();
  if (ns) deleteNamespace(ns);
});

test("two terminals on two pods show each container's hostname and environment", async () => {
  await openTerminal(page, "pod-a");
  await typeInto(page, "echo host=$HOSTNAME; env | grep GREETING\r");
  await waitFor("pod-a's hostname and env", async () => (await screenText(page)).includes("GREETING=hello-from-pod-a") && (await screenText(page)).includes("host=pod-a"));
  await shot(page, "terminals-1-pod-a");

  await openTerminal(page, "pod-b");
  await typeInto(page, "echo host=$HOSTNAME; env | grep GREETING\r");
  await waitFor("pod-b's hostname and env", async () => (await screenText(page)).includes("GREETING=hello-from-pod-b"));
  assert.ok(!(await screenText(page)).includes("pod-a"), "pod-b's terminal shows nothing of pod-a");
  await shot(page, "terminals-2-pod-b");

  const tabs = await page.getByRole("tab").allTextContents();
  assert.deepEqual(tabs.filter((t) => t.includes("/")), ["pod-a/main", "pod-b/main"]);
  await page.getByRole("tab", { name: "pod-a/main" }).click();
  assert.ok((await screenText(page)).includes("host=pod-a"), "pod-a's terminal kept its screen");
});

test("the session starts at the terminal's size, and a window resize reaches the process", async () => {
  await page.getByRole("tab", { name: "pod-a/main" }).click();
  const size = async () => {
    await typeInto(page, "clear; stty size\r");
    return waitFor("stty size", async () => /^(\d+) (\d+)$/m.exec(await screenText(page))?.slice(1).map(Number));
  };
  const [rows1, cols1] = await size();
  assert.ok(cols1 > 80 && rows1 > 5, `size ${rows1}x${cols1}`);
  await page.setViewportSize({ width: 900, height: 1000 });
  const [rows2, cols2] = await waitFor("a new size", async () => {
    const s = await size();
    return s[1] !== cols1 ? s : undefined;
  });
  assert.ok(cols2 < cols1 && rows2 > rows1, `after the resize: ${rows2}x${cols2}, before ${rows1}x${cols1}`);
  await shot(page, "terminals-3-resized");
});

test("copy a selection with Ctrl+Shift+C, paste with Ctrl+Shift+V", async () => {
  await page.getByRole("tab", { name: "pod-a/main" }).click();
  await shellReady(page);
  await typeInto(page, "clear; echo copy-me-$((6*7))\r");
  const word = page.locator('[role="tabpanel"]:not([hidden]) .xterm-rows > div', { hasText: /^copy-me-42/ });
  await word.waitFor();
  // A double click selects the word under the pointer, as in any terminal.
  // (xterm's screen layer takes the pointer above its rows.)
  const box = (await word.boundingBox())!;
  await page.mouse.dblclick(box.x + 20, box.y + box.height / 2);
  await page.keyboard.press("Control+Shift+C");
  await waitFor("the selection on the clipboard", async () => (await page.evaluate(() => navigator.clipboard.readText())) === "copy-me-42");

  await page.evaluate(() => navigator.clipboard.writeText("echo pasted-$((7*6))"));
  await shellReady(page);
  await page.keyboard.press("Control+Shift+V");
  await page.keyboard.press("Enter");
  await waitFor("the pasted command's output", async () => /^pasted-42$/m.test(await screenText(page)));
  await shot(page, "terminals-4-pasted");
});

test("a dropped connection reattaches by itself: nothing lost, nothing twice", async () => {
  await page.getByRole("tab", { name: "pod-b/main" }).click();
  await typeInto(page, "clear; for i in $(seq 1 40); do printf '%d,' $i; sleep 0.05; done; echo END\r");
  await waitFor("output to begin", async () => (await screenText(page)).includes("3,"));
  // Cut the attach in mid-output, as a network drop would.
  const live = routes.at(-1)!;
  await live.close({ code: 4000, reason: "test: network drop" });
  await waitFor("the status line to say reconnecting", async () => (await statusLine(page)).startsWith("reconnecting"), 5000);
  await shot(page, "terminals-5-reconnecting");
  await waitFor("the terminal to run again", async () => (await statusLine(page)).startsWith("running"));
  await waitFor("the loop to end", async () => (await screenText(page)).includes("END"));
  const text = (await screenText(page)).replace(/\n/g, "");
  const seq = Array.from({ length: 40 }, (_, i) => `${i + 1},`).join("") + "END";
  assert.ok(text.includes(seq), `the screen has every number once, in order:\n${text}`);
  await shot(page, "terminals-6-reconnected");
});
