// make bench, the console's part: Connect to the first output on screen, and
// keystroke to echo on screen, in the browser console (Debian's Chromium,
// headless) side by side with `kubectl terminal` on the same pod in the same
// run, turn by turn so that the machine's ups and downs touch both.
//
// The browser's figures are the console's own User Timing marks (#measure in
// its URL; src/ui/terminal.ts): from the Connect click, or from xterm's input
// event, to xterm's render of the rows with the output. kubectl terminal runs
// under script(1), which gives it a terminal: its keystroke is a byte written
// to that terminal, its echo the byte read back, its connect the time from
// starting the command to its first output byte.

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";

import type { Page } from "playwright-core";

import { deleteNamespace, launch, namespace, shellReady, startConsole, waitFor } from "../browser/harness.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? def : Number(process.argv[i + 1]);
};
const CONNECTS = arg("connects", 20);
const KEYS = arg("keys", 200);

// busybox's prompt, perhaps followed by its line editor's escape sequences
// (it asks where the cursor is, and redraws the prompt when answered).
const PROMPT = /# (\x1b\[[0-9;]*[A-Za-z]|\r\/ # )*$/;

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `p50 ${q(0.5).toFixed(2)} ms, p90 ${q(0.9).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms (n=${s.length})`;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** kubectl terminal in a terminal of its own (script(1)). */
class Plugin {
  private out = "";
  private waiters: { re: RegExp; resolve: () => void }[] = [];
  readonly proc: ChildProcessWithoutNullStreams;
  constructor(ns: string, pod: string) {
    const plugin = process.env.KUBECTL_TERMINAL ?? "kubectl-terminal";
    this.proc = spawn("script", ["-qfec", `stty cols 120 rows 40; exec ${plugin} --context alice -n ${ns} ${pod}`, "/dev/null"]);
    this.proc.stdout.on("data", (d: Buffer) => {
      const text = d.toString("latin1");
      // A terminal answers the cursor position query that busybox's line
      // editor sends at every prompt (xterm.js does in the browser).
      if (text.includes("\x1b[6n")) this.proc.stdin.write("\x1b[1;5R");
      this.out += text;
      this.waiters = this.waiters.filter((w) => {
        if (!w.re.test(this.out)) return true;
        w.resolve();
        return false;
      });
    });
  }
  clear(): void {
    this.out = "";
  }
  until(re: RegExp, ms = 30_000): Promise<void> {
    if (re.test(this.out)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`kubectl terminal printed no ${re}: ${JSON.stringify(this.out.slice(-200))}`)), ms);
      this.waiters.push({ re, resolve: () => (clearTimeout(t), resolve()) });
    });
  }
  write(s: string): void {
    this.proc.stdin.write(s);
  }
  /**
   * ready waits for the prompt and a shell that echoes: busybox eats keys
   * typed in the instant it reads the answer to its cursor query (so does
   * it under kubectl exec), so a probe key is typed until it is echoed.
   */
  async ready(): Promise<void> {
    await this.until(PROMPT);
    for (let i = 0; ; i++) {
      this.clear();
      this.write("@");
      try {
        await this.until(/@/, 200);
        this.write("\x15"); // Ctrl-U: the line is empty again
        return;
      } catch (e) {
        if (i === 50) throw e;
      }
    }
  }
  exited(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`kubectl terminal did not exit: ${JSON.stringify(this.out.slice(-200))}`)), 30_000);
      this.proc.on("exit", (c) => (clearTimeout(t), resolve(c)));
    });
  }
}

/** between is the time from mark `from` to the first `to` after it, once the page has both. */
async function between(page: Page, from: string, to: string): Promise<number> {
  return waitFor(`marks ${from} and ${to}`, () =>
    page.evaluate(
      ([f, t]) => {
        const start = performance.getEntriesByName(f).at(-1);
        const end = start && performance.getEntriesByName(t).find((e) => e.startTime >= start.startTime);
        return end ? end.startTime - start.startTime : undefined;
      },
      [from, to],
    ),
  );
}

/** Keys types into the console's terminal in a page, one key at a time, and keeps where each echo's time went. */
class Keys {
  readonly echo: number[] = [];
  readonly arrival: number[] = [];
  readonly frameWait: number[] = [];
  readonly render: number[] = [];
  private constructor(readonly page: Page) {}

  static async open(page: Page): Promise<Keys> {
    await page.getByRole("tab", { name: "Terminal", exact: true }).click();
    await page.getByRole("button", { name: "Connect" }).click();
    await waitFor("the browser terminal's prompt", () =>
      page.evaluate(() => /#\s*$/.test(document.querySelector('[role="tabpanel"]:not([hidden]) .xterm-rows')?.textContent?.replace(/\u00a0/g, " ") ?? "")),
    );
    await shellReady(page);
    return new Keys(page);
  }

  async key(c: string): Promise<void> {
    await this.page.evaluate(() => performance.clearMarks());
    // A person holds a key for tens of milliseconds; press() would release
    // it at once, and the key-up's handling would stand in the echo's way.
    await this.page.keyboard.down(c);
    await between(this.page, "terminal-input", "terminal-render");
    await this.page.keyboard.up(c);
    const m = await this.page.evaluate(() => {
      const t = (n: string) => performance.getEntriesByName(n)[0]?.startTime ?? NaN;
      return { input: t("terminal-input"), output: t("terminal-output"), frame: t("terminal-frame"), render: t("terminal-render") };
    });
    // xterm may have asked for the frame before the echo came (its cursor):
    // then its render runs first in the frame, and the frame mark after it.
    const frame = Math.min(m.frame, m.render);
    this.echo.push(m.render - m.input);
    this.arrival.push(m.output - m.input);
    this.frameWait.push(frame - m.output);
    this.render.push(m.render - frame);
  }
}

async function main(): Promise<void> {
const ns = await namespace("bench-console", ["latency"]);
const ui = await startConsole("alice", ns);
const browser = await launch();
const browsers = [browser];
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${ui.url}&measure=1`);
  await page.getByRole("treeitem", { name: /^latency\b/ }).click();

  const browserConnect: number[] = [];
  const pluginConnect: number[] = [];
  for (let i = 0; i < CONNECTS; i++) {
    await page.getByRole("tab", { name: "Terminal", exact: true }).click();
    await page.evaluate(() => performance.clearMarks());
    await page.getByRole("button", { name: "Connect" }).click();
    browserConnect.push(await between(page, "terminal-connect", "terminal-render"));
    await page.getByRole("button", { name: "Close" }).click();

    const t0 = performance.now();
    const p = new Plugin(ns, "latency");
    await p.until(/\S/);
    pluginConnect.push(performance.now() - t0);
    await p.ready();
    p.write("exit\r");
    await p.exited();
  }
  process.stderr.write(`>> ${CONNECTS} connects of each measured\n`);

  // Keystrokes into one terminal of each, in turn: the console in Chromium
  // as shipped, the console in a Chromium that does not hold a page's tasks
  // from a keystroke to its next frame (DeferRendererTasksAfterInput, on
  // by default: see docs/console.md, "How fast"), and kubectl terminal.
  const shipped = await Keys.open(page);
  const undeferredBrowser = await launch(["--disable-features=DeferRendererTasksAfterInput"]);
  browsers.push(undeferredBrowser);
  const undeferredPage = await (await undeferredBrowser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  // The bench keeps the page's last WebSocket (the terminal's attach) to
  // time round trips on it without a keyboard: what the browser's own
  // network path costs, beside kubectl terminal's.
  await undeferredPage.addInitScript(() => {
    const WS = window.WebSocket;
    (window as unknown as { WebSocket: unknown }).WebSocket = class extends WS {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        (window as unknown as { benchSocket: WebSocket }).benchSocket = this;
      }
    };
  });
  await undeferredPage.goto(`${ui.url}&measure=1`);
  await undeferredPage.getByRole("treeitem", { name: /^latency\b/ }).click();
  const undeferred = await Keys.open(undeferredPage);
  const plugin = new Plugin(ns, "latency");
  await plugin.ready();
  const pluginEcho: number[] = [];
  const letters = "abcdefghijklmnopqrstuvwxyz";
  for (let i = 0; i < KEYS; i++) {
    const c = letters[i % letters.length];
    await shipped.key(c);
    await undeferred.key(c);
    plugin.clear();
    const t0 = performance.now();
    plugin.write(c);
    await plugin.until(new RegExp(c));
    pluginEcho.push(performance.now() - t0);
    if (i % letters.length === letters.length - 1) {
      // Start the line afresh now and then (Ctrl-U).
      await shipped.page.keyboard.press("Control+U");
      await undeferred.page.keyboard.press("Control+U");
      plugin.write("\x15");
    }
  }
  plugin.write("\x15exit\r");
  await plugin.exited();
  await undeferred.page.keyboard.press("Control+U");
  const socketEcho = await undeferred.page.evaluate(async (n) => {
    const ws = (window as unknown as { benchSocket: WebSocket }).benchSocket;
    if (ws.protocol !== "v5.channel.k8s.io") throw new Error(`the attach speaks ${ws.protocol}, the bench v5.channel.k8s.io`);
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, 10));
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no echo on the attach's WebSocket in 5 s (round trip ${i})`)), 5000);
        ws.addEventListener("message", () => (clearTimeout(t), resolve()), { once: true });
        ws.send(new Uint8Array([0, 0x62])); // stdin: "b"
      });
      times.push(performance.now() - t0);
      if (i % 26 === 25) ws.send(new Uint8Array([0, 0x15]));
    }
    return times;
  }, KEYS);

  const pm = median(pluginEcho);
  // Where the browser's echo goes, median by median: the console's own part
  // (the attach's round trip from the page, through the console's proxy,
  // and xterm's render) beside kubectl terminal's round trip; then what
  // Chromium itself adds: handling the key before the echo can be taken in,
  // holding the page's tasks until the frame after a keystroke (as
  // shipped), and the frame the echo waits for to be painted, which a
  // terminal on a display waits for too, kubectl terminal's included.
  const own = median(socketEcho) + median(undeferred.render) - pm;
  const keyHandling = median(undeferred.arrival) - median(socketEcho);
  // Holding the echo back also makes it miss the frame it would have
  // made: the whole difference between the two browsers.
  const held = median(shipped.echo) - median(undeferred.echo);
  console.log(`\nThe browser console beside kubectl terminal, one pod, one run (${new Date().toISOString().slice(0, 10)}):`);
  console.log("  Connect to the first output on screen");
  console.log(`    browser (click to xterm's render):                 ${stats(browserConnect)}`);
  console.log(`    kubectl terminal (command to first byte):          ${stats(pluginConnect)}`);
  console.log("  keystroke to echo on screen");
  for (const [name, k] of [
    ["Chromium as shipped", shipped],
    ["Chromium, tasks not held for a frame after input", undeferred],
  ] as const) {
    console.log(`    browser, ${name} (xterm's input event to its render):`);
    console.log(`                                                       ${stats(k.echo)}`);
    console.log(`      input event to the echo's arrival:               ${stats(k.arrival)}`);
    console.log(`      the wait for the browser's next frame:           ${stats(k.frameWait)}`);
    console.log(`      xterm's render in that frame:                    ${stats(k.render)}`);
  }
  console.log(`    the attach's WebSocket in that page, no keyboard:  ${stats(socketEcho)}`);
  console.log(`    kubectl terminal (byte to byte):                   ${stats(pluginEcho)}`);
  console.log(`  the console's own part adds ${own.toFixed(2)} ms to kubectl terminal's echo at the median (target: at most 2 ms);`);
  console.log(`  Chromium adds ${keyHandling.toFixed(1)} ms handling the key and ${held.toFixed(1)} ms holding tasks after input; a frame is waited for ${median(undeferred.frameWait).toFixed(1)} ms:`);
  console.log(`  on screen, Chromium as shipped adds ${(median(shipped.echo) - pm).toFixed(1)} ms to kubectl terminal's echo; Connect: ${(median(browserConnect) - median(pluginConnect)).toFixed(1)} ms`);
} finally {
  for (const b of browsers) await b.close();
  ui.stop();
  deleteNamespace(ns);
}
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
