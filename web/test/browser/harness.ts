// The browser tests' harness: a namespace of their own on the local control
// plane (`make up`, hack/test-browser.sh), `kubectl terminal ui` as a given
// user, and Debian's chromium driven by playwright-core. Nothing here is a
// mock: the pages talk to the real console proxy, kube-apiserver,
// terminal-apiserver and containers on the real node.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

import { chromium, type Browser, type Page } from "playwright-core";
import { after, before } from "node:test";

export const root = path.resolve(process.env.REPO_ROOT ?? path.join(import.meta.dirname, "../../.."));
const plugin = process.env.KUBECTL_TERMINAL ?? path.join(root, "_output/bin/kubectl-terminal");
export const shots = path.join(root, "_output/browser");
mkdirSync(shots, { recursive: true });

export const BUSYBOX = process.env.BUSYBOX_IMAGE ?? "terminal.local/busybox:1";

/** kubectl runs kubectl as the given kubeconfig context (admin by default). */
export function kubectl(args: string[], opts: { context?: string; input?: string } = {}): string {
  return execFileSync("kubectl", ["--context", opts.context ?? "admin", ...args], { encoding: "utf8", input: opts.input, stdio: ["pipe", "pipe", "pipe"] });
}

/** waitFor polls f until it returns a value other than undefined/false, or fails after ms. */
export async function waitFor<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * namespace creates a namespace for one test file with alice as editor, and
 * the pods asked for (busybox, sleeping), Ready; it is deleted at the end.
 */
export async function namespace(prefix: string, pods: string[]): Promise<string> {
  const ns = `${prefix}-${randomBytes(3).toString("hex")}`;
  const docs = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "alice-edit", namespace: ns },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice" }],
    },
    ...pods.map((name) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: ns, labels: { app: name } },
      spec: {
        terminationGracePeriodSeconds: 0,
        containers: [{ name: "main", image: BUSYBOX, imagePullPolicy: "Never", command: ["sleep", "3600"], env: [{ name: "GREETING", value: `hello-from-${name}` }] }],
      },
    })),
  ];
  kubectl(["apply", "-f", "-"], { input: docs.map((d) => JSON.stringify(d)).join("\n---\n") });
  if (pods.length) kubectl(["-n", ns, "wait", "--for=condition=Ready", "--timeout=90s", ...pods.map((p) => `pod/${p}`)]);
  return ns;
}

export function deleteNamespace(ns: string): void {
  try {
    kubectl(["delete", "namespace", ns, "--wait=false"]);
  } catch {
    // already gone
  }
}

/** bind grants user a ClusterRole in ns. */
export function bind(ns: string, user: string, role: string): void {
  kubectl(["-n", ns, "create", "rolebinding", `${user}-${role}`, `--clusterrole=${role}`, `--user=${user}`]);
}

export interface Console {
  url: string;
  origin: string;
  token: string;
  proc: ChildProcess;
  stop(): void;
}

/** startConsole runs `kubectl terminal ui` as context, in ns, and returns its printed URL. */
export async function startConsole(context: string, ns: string): Promise<Console> {
  const proc = spawn(plugin, ["ui", "--context", context, "-n", ns], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  const url = await waitFor("kubectl terminal ui to print its URL", () => /(http:\/\/127\.0\.0\.1:\d+\/\?run=[\w-]+#token=[\w-]+)/.exec(out)?.[1], 20_000);
  return { url, origin: new URL(url).origin, token: new URL(url).hash.slice("#token=".length), proc, stop: () => proc.kill("SIGTERM") };
}

export const chromiumArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"];

export function launch(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: [...chromiumArgs, ...extraArgs], headless: true });
}

/** shot saves a screenshot for people to look at; tests assert on the page, never on these. */
export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
}

/** screenText is what the terminal in the visible panel shows, line by line (xterm's DOM renderer). */
export async function screenText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const panel = [...document.querySelectorAll<HTMLElement>('[role="tabpanel"]')].find((p) => !p.hidden);
    const rows = panel?.querySelector(".xterm-rows");
    if (!rows) return "";
    return [...rows.children].map((r) => (r.textContent ?? "").replace(/\u00a0/g, " ").trimEnd()).join("\n");
  });
}

/** openTerminal selects pod in the topology and connects to its default container. */
export async function openTerminal(page: Page, pod: string): Promise<void> {
  await page.getByRole("treeitem", { name: new RegExp(`^${pod}\\b`) }).click();
  await page.getByRole("tab", { name: "Terminal", exact: true }).click();
  await page.getByRole("button", { name: "Connect" }).click();
  await waitFor(`a running terminal on ${pod}`, async () => (await statusLine(page)).startsWith("running"));
}

export async function statusLine(page: Page): Promise<string> {
  return page.evaluate(() => {
    const panel = [...document.querySelectorAll<HTMLElement>('[role="tabpanel"]')].find((p) => !p.hidden);
    return panel?.querySelector(".terminal .status")?.textContent ?? "";
  });
}

/** typeInto types into the visible terminal as a person does (xterm's textarea). */
export async function typeInto(page: Page, text: string): Promise<void> {
  await page.locator('[role="tabpanel"]:not([hidden]) .xterm-helper-textarea').focus();
  await page.keyboard.type(text);
}

/**
 * shellReady waits until the shell in the visible terminal takes keys:
 * busybox's line editor drops keys that arrive the instant it reads the
 * answer to its cursor query at each prompt (under kubectl exec too), so a
 * probe key is typed until it shows, then erased (Ctrl-U).
 */
export async function shellReady(page: Page): Promise<void> {
  for (let i = 0; ; i++) {
    await typeInto(page, "@");
    try {
      await waitFor("the probe key on screen", async () => /@$/m.test(await screenText(page)), 500);
      await page.keyboard.press("Control+U");
      await waitFor("the probe key erased", async () => !/@$/m.test(await screenText(page)), 5000);
      return;
    } catch (e) {
      if (i === 20) throw e;
    }
  }
}

/** axeSource is axe-core's script, to inject into a page. */
export function axeSource(): string {
  const require = createRequire(import.meta.url);
  return readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
}

/** A test file's console: its namespace, alice's `kubectl terminal ui`, and a page on it. */
export interface Fixture {
  ns: string;
  ui: Console;
  browser: Browser;
  page: Page;
}

/**
 * fixture sets one up before the file's tests (prepare runs in the new
 * namespace before the console starts; the page is ready when the first
 * pod is in its topology) and removes it after them.
 */
export function fixture(prefix: string, pods: string[], prepare: (ns: string) => void = () => {}): Fixture {
  const f = {} as Fixture;
  before(async () => {
    f.ns = await namespace(prefix, pods);
    prepare(f.ns);
    f.ui = await startConsole("alice", f.ns);
    f.browser = await launch();
    f.page = await (await f.browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await f.page.goto(f.ui.url);
    if (pods.length) await f.page.getByRole("treeitem", { name: new RegExp(`^${pods[0]}\\b`) }).waitFor();
  });
  after(async () => {
    await f.browser?.close();
    f.ui?.stop();
    if (f.ns) deleteNamespace(f.ns);
  });
  return f;
}
