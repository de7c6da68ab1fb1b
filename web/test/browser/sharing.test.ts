// Shared sessions in the browser: alice's terminal, bob joining it from his own
// console (a second browser context, his own credentials) and typing, and the
// viewer observing: the same output, and no typing.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, BrowserContext, Page } from "playwright-core";

import { bind, deleteNamespace, kubectl, launch, namespace, openTerminal, screenText, shot, startConsole, statusLine, typeInto, waitFor, type Console } from "./harness.ts";

let ns: string;
const consoles: Console[] = [];
let browser: Browser;
const contexts: BrowserContext[] = [];

async function as(user: string): Promise<Page> {
  const ui = await startConsole(user, ns);
  consoles.push(ui);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(ctx);
  const page = await ctx.newPage();
  await page.goto(ui.url);
  return page;
}

let alice: Page;
let bob: Page;
let viewer: Page;
let session = "";

before(async () => {
  ns = await namespace("browser-share", ["shared"]);
  bind(ns, "bob", "edit");
  bind(ns, "bob", "terminal-sessions-join");
  bind(ns, "viewer", "view");
  bind(ns, "viewer", "terminal-sessions-observe");
  browser = await launch();
  [alice, bob, viewer] = await Promise.all([as("alice"), as("bob"), as("viewer")]);
});

after(async () => {
  await browser?.close();
  for (const c of consoles) c.stop();
  if (ns) deleteNamespace(ns);
});

test("alice's session appears in the others' Sessions lists, with the buttons their grants allow", async () => {
  await openTerminal(alice, "shared");
  await typeInto(alice, "echo alice-was-here\r");
  await waitFor("alice's echo", async () => (await screenText(alice)).includes("alice-was-here\n"));
  session = JSON.parse(kubectl(["-n", ns, "get", "terminalsessions", "-o", "json"])).items[0].metadata.name;

  await bob.getByRole("button", { name: `Join ${session}` }).waitFor();
  await viewer.getByRole("button", { name: `Observe ${session}` }).waitFor();
  assert.equal(await viewer.getByRole("button", { name: `Join ${session}` }).count(), 0, "the viewer, who may not join, has no Join button");
  assert.equal(await alice.getByRole("button", { name: `Reattach ${session}` }).count(), 0, "alice's open session is not offered to reattach");
  // Reading someone's transcript takes the replay verb, which neither has.
  assert.equal(await bob.getByRole("button", { name: `Replay ${session}` }).count(), 0, "bob (edit, join) has no Replay button");
  assert.equal(await viewer.getByRole("button", { name: `Replay ${session}` }).count(), 0, "the viewer (view, observe) has no Replay button");
  await alice.getByRole("button", { name: `Replay ${session}` }).waitFor();
  await shot(bob, "sharing-1-bob-sessions");
});

test("bob joins and types; alice sees it; the viewer observes read-only", async () => {
  await bob.getByRole("button", { name: `Join ${session}` }).click();
  await waitFor("bob's terminal running", async () => (await statusLine(bob)).startsWith("running"));
  await waitFor("alice's earlier output on bob's screen", async () => (await screenText(bob)).includes("alice-was-here"));
  await typeInto(bob, "echo bob-typed-$((40+2))\r");
  await waitFor("bob's input on alice's screen", async () => (await screenText(alice)).includes("bob-typed-42"));

  await viewer.getByRole("button", { name: `Observe ${session}` }).click();
  await waitFor("the viewer's terminal running", async () => (await statusLine(viewer)).startsWith("running"));
  assert.match(await statusLine(viewer), /read-only/);
  await waitFor("the shared output on the viewer's screen", async () => (await screenText(viewer)).includes("bob-typed-42"));
  await typeInto(viewer, "echo viewer-typed\r");
  await typeInto(alice, "echo after-viewer\r");
  await waitFor("alice's next echo on the viewer's screen", async () => (await screenText(viewer)).includes("after-viewer\n"));
  assert.ok(!(await screenText(alice)).includes("viewer-typed"), "the observer's keys never reached the shell");
  await waitFor("three viewers counted", async () => (await statusLine(alice)).includes("3 viewers"));
  await shot(viewer, "sharing-2-viewer-read-only");
  await shot(alice, "sharing-3-alice");
});
