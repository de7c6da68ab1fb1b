// Broadcast input: one keystroke stream into every marked terminal, and none
// into a terminal left out.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { deleteNamespace, launch, namespace, openTerminal, screenText, shot, startConsole, typeInto, waitFor, type Console } from "./harness.ts";

let ns: string;
let ui: Console;
let browser: Browser;
let page: Page;

before(async () => {
  ns = await namespace("browser-bcast", ["one", "two", "three"]);
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

test("typing once with broadcast on reaches every marked terminal, and only those", async () => {
  for (const pod of ["one", "two", "three"]) await openTerminal(page, pod);
  await page.getByRole("button", { name: "Broadcast input" }).click();
  await page.getByRole("checkbox", { name: "Broadcast to three/main" }).uncheck();
  const banner = page.getByText(/Broadcast is on/);
  assert.match(await banner.textContent() ?? "", /all 2 marked terminals/);
  await shot(page, "broadcast-1-on");

  await page.getByRole("tab", { name: "two/main" }).click();
  await typeInto(page, "echo bc-$((6*7))-$HOSTNAME\r");
  const screenOf = async (pod: string) => {
    await page.getByRole("tab", { name: `${pod}/main` }).click();
    return screenText(page);
  };
  await waitFor("the echo in one", async () => (await screenOf("one")).includes("bc-42-one\n"));
  await waitFor("the echo in two", async () => (await screenOf("two")).includes("bc-42-two\n"));
  assert.ok(!(await screenOf("three")).includes("bc-"), "the unmarked terminal got nothing");
  await shot(page, "broadcast-2-reached");

  await page.getByRole("button", { name: "Broadcast input" }).click();
  assert.equal(await page.getByText(/Broadcast is on/).count(), 0);
  await page.getByRole("tab", { name: "one/main" }).click();
  await typeInto(page, "echo only-one\r");
  await waitFor("the echo in one", async () => (await screenOf("one")).includes("only-one\n"));
  assert.ok(!(await screenOf("two")).includes("only-one"), "with broadcast off, input stays in its terminal");
});
