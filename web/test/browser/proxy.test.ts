// The same built files behind `kubectl proxy --www`, on the port whose origin
// make up lets attach (KUBECTL_PROXY_PORT): the topology, and a terminal.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { deleteNamespace, launch, namespace, openTerminal, root, screenText, shot, typeInto, waitFor } from "./harness.ts";

let ns: string;
let proxy: ChildProcess;
let browser: Browser;
const port = process.env.KUBECTL_PROXY_PORT ?? "8001";

before(async () => {
  ns = await namespace("browser-proxy", ["behind-proxy"]);
  proxy = spawn("kubectl", ["--context", "alice", "proxy", `--port=${port}`, `--www=${path.join(root, "pkg/console/dist")}`, "--www-prefix=/ui/"], { stdio: "ignore" });
  await waitFor("kubectl proxy to listen", async () => (await fetch(`http://127.0.0.1:${port}/ui/`)).ok, 15_000);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  proxy?.kill("SIGTERM");
  if (ns) deleteNamespace(ns);
});

test("behind kubectl proxy --www the console shows the namespace and opens a terminal", async () => {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`http://127.0.0.1:${port}/ui/#namespace=${ns}`);
  await openTerminal(page, "behind-proxy");
  await typeInto(page, "echo via-proxy-$HOSTNAME\r");
  await waitFor("the echo", async () => (await screenText(page)).includes("via-proxy-behind-proxy\n"));
  assert.equal(await page.locator("#namespace").inputValue(), ns);
  await shot(page, "proxy-1-terminal");
});
