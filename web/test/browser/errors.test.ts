// Errors a person can act on: an exit code, a session closed by someone else
// with its reason, a pod that is not running, and the console gone away.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { deleteNamespace, kubectl, launch, namespace, openTerminal, shot, startConsole, statusLine, typeInto, waitFor, type Console } from "./harness.ts";

let ns: string;
let ui: Console;
let browser: Browser;
let page: Page;

before(async () => {
  ns = await namespace("browser-err", ["target"]);
  // A pod that cannot be scheduled: it never runs.
  kubectl(["-n", ns, "run", "stuck", "--image=terminal.local/busybox:1", "--image-pull-policy=Never", "--overrides", JSON.stringify({ spec: { nodeSelector: { "no-such-label": "x" } } }), "--", "sleep", "3600"]);
  ui = await startConsole("alice", ns);
  browser = await launch();
  page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(ui.url);
});

after(async () => {
  await browser?.close();
  ui?.stop();
  if (ns) deleteNamespace(ns);
});

const closedLine = () =>
  waitFor("the terminal to close", async () => {
    const s = await statusLine(page);
    return s.startsWith("closed") ? s : undefined;
  });

test("a shell that exits 3 says so", async () => {
  await openTerminal(page, "target");
  await typeInto(page, "exit 3\r");
  assert.equal(await closedLine(), "closed: Exited, exit code 3");
  await shot(page, "errors-1-exit-3");
});

test("a session deleted by someone else says it was deleted", async () => {
  await openTerminal(page, "target");
  const name = await waitFor("the session's name", async () => /running · (\S+)/.exec(await statusLine(page))?.[1]);
  kubectl(["-n", ns, "delete", "terminalsession", name, "--wait=false"]);
  assert.match(await closedLine(), /^closed: Deleted/);
  await shot(page, "errors-2-deleted");
});

test("a pod that is not running is refused before a session is made", async () => {
  await page.getByRole("treeitem", { name: /^stuck\b/ }).click();
  await page.getByRole("button", { name: "Connect" }).click();
  const alert = page.getByRole("alert").filter({ hasText: "stuck" });
  assert.match((await alert.textContent()) ?? "", /Pod stuck is not running \(Pending\)/);
  assert.equal(kubectl(["-n", ns, "get", "terminalsessions", "-o", "name", "--field-selector", "spec.target.pod=stuck"]).trim(), "");
  await shot(page, "errors-3-not-running");
});

test("when the console's process goes away, the page says the API is unreachable", async () => {
  ui.stop();
  await waitFor("the unreachable message", async () => (await page.getByText(/the Kubernetes API is unreachable/).count()) > 0, 15_000);
  await shot(page, "errors-4-unreachable");
});
