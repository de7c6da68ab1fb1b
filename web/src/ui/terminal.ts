// One terminal: xterm.js on a Connection (src/attach), with its status line.

import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { Terminal } from "@xterm/xterm";

import { ApiError, createSession, get, sessionPath, tokenProtocols, type TerminalSession } from "../api/kube.ts";
import { Connection, type State, type Verdict } from "../attach/attach.ts";
import { h } from "./dom.ts";
import type { AutoClose } from "./prefs.ts";

// With #measure in the console's URL (make bench), terminals leave User
// Timing marks: "terminal-input" at xterm's input event, "terminal-output"
// when output arrives, "terminal-frame" when the browser's next frame
// begins, and "terminal-render" when xterm has rendered the rows in it
// (what is on screen at that paint). Off, nothing is
// recorded: marks pile up in a long session.
let measuring = false;

export function setMeasuring(on: boolean): void {
  measuring = on;
}

/** mark leaves a User Timing mark when measuring. */
export function mark(name: string): void {
  if (measuring) performance.mark(name);
}

/** How a terminal attaches: its own new session, or someone's existing one. */
export type Mode = "own" | "join" | "observe";

export interface TerminalSpec {
  namespace: string;
  pod: string;
  container: string;
  mode: Mode;
  /** An existing session to attach to (reattach, join, observe); none: create one. */
  session?: TerminalSession;
  autoClose: AutoClose;
}

export class TerminalView {
  readonly panel: HTMLElement;
  readonly term: Terminal;
  /** The session's name once created. */
  name = "";
  /** Where input goes: this terminal, or all broadcast targets (set by the drawer). */
  input: (data: string) => void = (d) => this.send(d);
  onState: (s: State) => void = () => {};
  state: State = { kind: "connecting" };
  private readonly fit = new FitAddon();
  private readonly statusLine: HTMLElement;
  private readonly screen: HTMLElement;
  private conn: Connection | null = null;
  private resizeObs: ResizeObserver | null = null;
  private viewers = 0;
  private markOutput: () => void;

  constructor(readonly spec: TerminalSpec) {
    this.statusLine = h("div", { class: "status", role: "status", "aria-live": "polite" }, "connecting…");
    this.screen = h("div", { class: "screen", "data-testid": "screen" });
    this.panel = h("div", { class: "terminal" }, this.statusLine, this.screen);
    if (spec.mode === "observe") this.panel.classList.add("read-only");
    this.term = new Terminal({
      cursorBlink: true,
      disableStdin: spec.mode === "observe",
      scrollback: 5000,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 14,
      screenReaderMode: false,
    });
    this.term.loadAddon(this.fit);
    this.term.loadAddon(new WebLinksAddon());
    this.term.onData((d) => {
      mark("terminal-input");
      if (this.spec.mode !== "observe") this.input(d);
    });
    let rendered = true;
    this.term.onRender(() => {
      if (!rendered) mark("terminal-render");
      rendered = true;
    });
    this.markOutput = () => {
      if (rendered && measuring) {
        mark("terminal-output");
        // Registered before xterm.write asks for its own frame, so it runs
        // first in that frame: the time from here to "terminal-render" is
        // xterm's work, the time before it the wait for the browser's frame.
        requestAnimationFrame(() => mark("terminal-frame"));
      }
      rendered = false;
    };
    this.term.onBinary((d) => {
      if (this.spec.mode !== "observe") this.input(d);
    });
    this.term.onResize(({ cols, rows }) => this.conn?.resize(cols, rows));
    // Ctrl+Shift+C copies the selection, as in a Linux terminal (Ctrl+C is
    // the shell's interrupt). Pasting is the browser's: Ctrl+Shift+V or its
    // menu reach xterm's paste event; Ctrl+V goes to the shell (literal-next).
    this.term.attachCustomKeyEventHandler((e) => {
      if (e.type === "keydown" && e.ctrlKey && e.shiftKey && e.code === "KeyC" && this.term.hasSelection()) {
        void navigator.clipboard?.writeText(this.term.getSelection());
        return false;
      }
      return true;
    });
  }

  /** start opens the terminal in the page (the panel must be in the document, visible) and connects. */
  async start(): Promise<void> {
    this.term.open(this.screen);
    this.fitNow();
    this.resizeObs = new ResizeObserver(() => this.fitNow());
    this.resizeObs.observe(this.screen);
    let s = this.spec.session;
    try {
      if (!s) {
        const ac = this.spec.autoClose.enabled ? { idleTimeout: this.spec.autoClose.idleTimeout, detachGracePeriod: this.spec.autoClose.detachGracePeriod } : null;
        s = await createSession(this.spec.namespace, this.spec.pod, this.spec.container, { cols: this.term.cols, rows: this.term.rows }, ac);
      }
    } catch (e) {
      this.setState({ kind: "closed", exitCode: null, reason: e instanceof ApiError ? e.reason || `HTTP ${e.code}` : "Error", message: e instanceof Error ? e.message : String(e) });
      return;
    }
    this.name = s.metadata.name;
    this.viewers = s.status?.viewers ?? 0;
    const ns = this.spec.namespace;
    const name = s.metadata.name;
    this.conn = new Connection({
      base: location.href,
      namespace: ns,
      name,
      uid: s.metadata.uid,
      stdin: this.spec.mode !== "observe",
      tty: true,
      check: () => verdict(ns, name),
      output: (d) => {
        this.markOutput();
        this.term.write(d);
      },
      state: (st) => this.setState(st),
      extraProtocols: tokenProtocols(),
    });
    // The session was created at this size; a joiner's terminal tells its own.
    if (this.spec.mode === "join") this.conn.resize(this.term.cols, this.term.rows);
  }

  focus(): void {
    this.term.focus();
  }

  send(data: string): void {
    if (this.spec.mode !== "observe") this.conn?.send(data);
  }

  /** setViewers shows the session's viewer count (from the Sessions watch). */
  setViewers(n: number): void {
    this.viewers = n;
    this.render();
  }

  fitNow(): void {
    if (this.screen.offsetParent === null) return; // hidden: keep the size until shown
    try {
      this.fit.fit();
    } catch {
      // not measurable yet
    }
  }

  /** dispose detaches and removes the terminal; the caller decides whether to delete the session. */
  dispose(): void {
    this.conn?.close();
    this.resizeObs?.disconnect();
    this.term.dispose();
    this.panel.remove();
  }

  /** notice shows msg in the status line until the next change of state. */
  notice(msg: string): void {
    this.statusLine.textContent = msg;
  }

  private setState(s: State): void {
    this.state = s;
    if (s.kind === "closed") this.term.options.disableStdin = true;
    this.render();
    this.onState(s);
  }

  private render(): void {
    const s = this.state;
    const who = this.spec.mode === "observe" ? " · read-only (observing)" : this.spec.mode === "join" ? " · joined" : "";
    const viewers = this.viewers ? ` · ${this.viewers} viewer${this.viewers === 1 ? "" : "s"}` : "";
    let text: string;
    switch (s.kind) {
      case "connecting":
        text = "connecting…";
        break;
      case "running":
        text = `running · ${this.name}${who}${viewers}`;
        break;
      case "reconnecting":
        text = `reconnecting (attempt ${s.attempt}) · ${this.name}: the connection dropped; output resumes where it stopped`;
        break;
      case "closed":
        text = `closed: ${s.reason}${s.exitCode !== null ? `, exit code ${s.exitCode}` : ""}${s.message ? ` — ${s.message}` : ""}`;
        break;
    }
    this.statusLine.textContent = text;
    this.statusLine.dataset.state = s.kind;
  }
}

/** verdict asks the API whether a session whose connection dropped is still open. */
async function verdict(ns: string, name: string): Promise<Verdict> {
  try {
    const s = await get<TerminalSession>(sessionPath(ns, name));
    if (s.status?.phase === "Closed" || s.status?.phase === "Failed" || s.metadata.deletionTimestamp) {
      return { open: false, exitCode: s.status?.exitCode ?? null, reason: s.status?.reason || s.status?.phase || "Closed", message: s.status?.message ?? "" };
    }
    return { open: true };
  } catch (e) {
    if (e instanceof ApiError && e.code === 404) return { open: false, exitCode: null, reason: "Deleted", message: "the session no longer exists" };
    if (e instanceof ApiError && e.code === 403) return { open: false, exitCode: null, reason: "Forbidden", message: e.message };
    throw e;
  }
}
