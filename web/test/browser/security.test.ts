// What the console refuses: a user without access sees the API's 403, a
// request without the console's token is refused, and a page of another
// origin (another port of 127.0.0.1: the same site) gets no token from the
// browser and can neither open an attach WebSocket nor create a session.

import assert from "node:assert/strict";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { deleteNamespace, kubectl, launch, namespace, screenText, shot, startConsole, statusLine, waitFor, type Console } from "./harness.ts";

let ns: string;
let browser: Browser;
const consoles: Console[] = [];
let evil: Server;

before(async () => {
  ns = await namespace("browser-sec", ["target"]);
  kubectl(["-n", ns, "create", "rolebinding", "viewer-view", "--clusterrole=view", "--user=viewer"]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const c of consoles) c.stop();
  evil?.close();
  if (ns) deleteNamespace(ns);
});

test("a user who may not open a terminal sees the API's 403, naming what is missing", async () => {
  const ui = await startConsole("viewer", ns);
  consoles.push(ui);
  const page = await (await browser.newContext()).newPage();
  await page.goto(ui.url);
  await page.getByRole("treeitem", { name: /^target\b/ }).click();
  await page.getByRole("button", { name: "Connect" }).click();
  const line = await waitFor("the refusal", async () => {
    const s = await statusLine(page);
    return s.startsWith("closed") ? s : undefined;
  });
  assert.match(line, /closed: Forbidden/);
  assert.match(line, /User "viewer" cannot create resource "terminalsessions"/);
  assert.equal((await screenText(page)).trim(), "", "no terminal output");
  await shot(page, "security-1-forbidden");
});

test("the console refuses requests without its token", async () => {
  const ui = await startConsole("alice", ns);
  consoles.push(ui);
  for (const path of ["/config.json", "/api/v1/namespaces", `/apis/terminal.meshery.io/v1alpha1/namespaces/${ns}/terminalsessions`]) {
    const res = await fetch(ui.origin + path, { redirect: "manual" });
    assert.equal(res.status, 401, path);
    assert.match(await res.text(), /needs its token/);
  }
  // The page loads (it holds no secret) and says what to do.
  const page = await (await browser.newContext()).newPage();
  await page.goto(ui.origin + "/");
  await page.getByRole("alert").filter({ hasText: "needs its token" }).waitFor();
  assert.equal(await page.getByRole("tree").count(), 0, "nothing of the cluster is shown");
  await shot(page, "security-2-no-token");
});

test("another origin's page gets no token and can neither attach nor create a session", async () => {
  const ui = await startConsole("alice", ns);
  consoles.push(ui);
  const ctx = await browser.newContext();
  const page: Page = await ctx.newPage();
  await page.goto(ui.url); // the console is open in this browser
  await page.getByRole("treeitem", { name: /^target\b/ }).waitFor();
  const session = JSON.parse(
    kubectl(["-n", ns, "create", "-f", "-", "-o", "json"], {
      context: "alice",
      input: JSON.stringify({ apiVersion: "terminal.meshery.io/v1alpha1", kind: "TerminalSession", metadata: { generateName: "victim-" }, spec: { target: { pod: "target" } } }),
    }),
  ).metadata.name;

  // A page on another port of 127.0.0.1: the same site, to which a browser
  // would send a cookie of the console (there is none to send).
  const seen: string[] = [];
  evil = createServer((req, res) => {
    seen.push(JSON.stringify(req.headers));
    res.end("<!doctype html><title>evil</title>");
  });
  await new Promise<void>((r) => evil.listen(0, "127.0.0.1", r));
  const evilOrigin = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
  const attacker = await ctx.newPage();
  await attacker.goto(evilOrigin);
  const target = ui.origin.replace("http:", "ws:") + `/apis/terminal.meshery.io/v1alpha1/namespaces/${ns}/terminalsessions/${session}/attach?stdout=true&stdin=true&tty=true`;
  const ws = await attacker.evaluate(
    (url) =>
      new Promise<string>((resolve) => {
        const s = new WebSocket(url, ["v5.channel.k8s.io"]);
        s.onopen = () => resolve("opened");
        s.onclose = (e) => resolve(`closed ${e.code}`);
      }),
    target,
  );
  assert.equal(ws, "closed 1006", "the attach WebSocket from another origin never opened");
  assert.ok(seen.length > 0 && !seen.some((h) => h.includes(ui.token)), "the browser sent the console's token to the other server");
  await attacker.evaluate(
    async ({ url, ns }) => {
      await fetch(url, {
        method: "POST",
        mode: "no-cors",
        credentials: "include",
        headers: { "Content-Type": "text/plain" },
        body: JSON.stringify({ apiVersion: "terminal.meshery.io/v1alpha1", kind: "TerminalSession", metadata: { name: "csrf", namespace: ns }, spec: { target: { pod: "target" } } }),
      }).catch(() => {});
    },
    { url: `${ui.origin}/apis/terminal.meshery.io/v1alpha1/namespaces/${ns}/terminalsessions`, ns },
  );
  const names = kubectl(["-n", ns, "get", "terminalsessions", "-o", "name"]);
  assert.ok(!names.includes("csrf"), `no session was created from the other origin: ${names}`);

  // And from a program that has the token and sets a foreign Origin itself.
  const [status, body] = await new Promise<[number, string]>((resolve, reject) => {
    const r = request(target.replace("ws:", "http:"), {
      headers: { Origin: "http://evil.example", Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": `v5.channel.k8s.io, base64url.console.terminal.meshery.io.${ui.token}` },
    });
    r.on("upgrade", () => reject(new Error("the upgrade was accepted")));
    r.on("response", (res) => {
      let b = "";
      res.on("data", (d) => (b += d));
      res.on("end", () => resolve([res.statusCode ?? 0, b]));
    });
    r.on("error", reject);
    r.end();
  });
  assert.equal(status, 403);
  assert.match(body, /only the console's own pages/);
});
