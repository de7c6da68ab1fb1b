// The attach protocol of terminal-apiserver in the browser, with no UI in it:
// what a UI such as Kanvas embeds to subscribe to a TerminalSession through
// the Kubernetes API proxy (docs/console.md).
//
// An attach is a WebSocket to
//   /apis/terminal.meshery.io/v1alpha1/namespaces/NS/terminalsessions/NAME/attach
// speaking the channel protocols of pods/attach: v5.channel.k8s.io (binary
// frames, the channel in the first byte) or, where a proxy only passes text,
// v4.base64.channel.k8s.io (text frames, the channel as a digit, base64).
// The server ends an attach with a metav1.Status on the error channel: the
// process's exit code when it exits. A connection that drops without one is
// reattached with since=N, N the output bytes already received, so nothing
// is lost and nothing shown twice (an attach's opening notice of output no
// longer kept counts as the bytes it stands for: OutputCounter).

export const PROTOCOLS = ["v5.channel.k8s.io", "v4.base64.channel.k8s.io"] as const;

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const CLOSE = 255;

// The server closes a connection whose frame exceeds 64 KiB; client-go sends
// at most 32 KiB of input per frame, and so does this module (44 KiB once
// in base64).
export const MAX_INPUT_FRAME = 32 << 10;

/** What a WebSocket constructor needs to be: the browser's, or a test's. */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** The query of an attach: TerminalSessionAttachOptions. */
export interface AttachQuery {
  stdin: boolean;
  tty: boolean;
  /** Output bytes the viewer already has. */
  since?: number;
  /** The session the viewer means: a session of the same name created since is refused. */
  uid?: string;
}

/**
 * attachURL is the WebSocket URL of a session's attach subresource. base is
 * the page's origin (or the API proxy's), http(s) or ws(s).
 */
export function attachURL(base: string, namespace: string, name: string, q: AttachQuery): string {
  const u = new URL(
    `/apis/terminal.meshery.io/v1alpha1/namespaces/${encodeURIComponent(namespace)}` +
      `/terminalsessions/${encodeURIComponent(name)}/attach`,
    base,
  );
  u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  u.searchParams.set("stdout", "true");
  if (q.stdin) u.searchParams.set("stdin", "true");
  if (q.tty) u.searchParams.set("tty", "true");
  if (q.since) u.searchParams.set("since", String(q.since));
  if (q.uid) u.searchParams.set("uid", q.uid);
  return u.toString();
}

/** How an attach ended. */
export type End =
  /** The server ended it: the process exited (exitCode) or the session closed. */
  | { kind: "status"; success: boolean; exitCode: number | null; reason: string; message: string }
  /** The connection dropped or was refused, with no status: reattach, or ask the API why. */
  | { kind: "dropped"; code: number; reason: string }
  /** close() was called. */
  | { kind: "closed" };

export interface AttachHandlers {
  /** Output, in order; a terminal decodes UTF-8 across chunks itself. */
  output?: (data: Uint8Array) => void;
  open?: (protocol: string) => void;
  end?: (end: End) => void;
}

/** One WebSocket attach. */
export class Attachment {
  private readonly count = new OutputCounter();
  /** Whether the WebSocket opened (a refused attach never does). */
  opened = false;
  private ws: WebSocketLike;
  private base64 = false;
  private ended = false;
  private status: End | null = null;
  private readonly enc = new TextEncoder();

  /** Output bytes since the attach began, as the server counts them (add the query's since for the session's offset). */
  get received(): number {
    return this.count.offset;
  }

  /**
   * extraProtocols are offered after the channel protocols: credentials for
   * a proxy on the way, as kube-apiserver's base64url.bearer.authorization.k8s.io.
   * (a browser cannot set a WebSocket's headers).
   */
  constructor(
    url: string,
    private readonly h: AttachHandlers,
    WS: WebSocketConstructor = globalThis.WebSocket as unknown as WebSocketConstructor,
    extraProtocols: string[] = [],
  ) {
    this.ws = new WS(url, [...PROTOCOLS, ...extraProtocols]);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      this.opened = true;
      this.base64 = this.ws.protocol === "v4.base64.channel.k8s.io";
      this.h.open?.(this.ws.protocol);
    };
    this.ws.onmessage = (ev) => this.frame(ev.data);
    this.ws.onerror = () => {}; // onclose follows and says how it ended
    this.ws.onclose = (ev) => this.finish(this.status ?? { kind: "dropped", code: ev.code, reason: ev.reason });
  }

  /** send types into the process: a string is sent as UTF-8; large input goes in several frames. */
  send(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? this.enc.encode(data) : data;
    for (let i = 0; i < bytes.length; i += MAX_INPUT_FRAME) {
      this.write(STDIN, bytes.subarray(i, i + MAX_INPUT_FRAME));
    }
  }

  /** resize tells the process its terminal's size (observers' resizes are dropped by the server). */
  resize(cols: number, rows: number): void {
    if (!(cols > 0 && rows > 0)) return;
    this.write(RESIZE, this.enc.encode(JSON.stringify({ Width: Math.floor(cols), Height: Math.floor(rows) })));
  }

  /** close ends this attach; the session goes on (delete it to end the shell). */
  close(): void {
    if (this.ws.readyState <= 1) this.ws.close(1000);
    this.finish({ kind: "closed" });
  }

  private write(channel: number, payload: Uint8Array): void {
    if (this.ws.readyState !== 1) return;
    if (this.base64) {
      this.ws.send(String(channel) + toBase64(payload));
      return;
    }
    const frame = new Uint8Array(payload.length + 1);
    frame[0] = channel;
    frame.set(payload, 1);
    this.ws.send(frame);
  }

  private frame(data: unknown): void {
    let channel: number;
    let payload: Uint8Array;
    if (typeof data === "string") {
      if (data.length === 0) return;
      channel = data.charCodeAt(0) - 48; // '0'
      try {
        payload = fromBase64(data.slice(1));
      } catch {
        return; // not base64: nothing to show
      }
    } else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      const all = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (all.length === 0) return;
      channel = all[0];
      payload = all.subarray(1);
    } else {
      return;
    }
    switch (channel) {
      case STDOUT:
      case STDERR:
        if (payload.length === 0) return;
        this.count.count(payload);
        this.h.output?.(payload);
        return;
      case ERROR:
        this.status = parseStatus(payload);
        return;
      case CLOSE:
        return;
    }
  }

  private finish(end: End): void {
    if (this.ended) return;
    this.ended = true;
    this.ws.onmessage = null;
    this.h.end?.(end);
  }
}

// When output a reattach asks for is no longer kept, the attach begins with
// a notice of how many bytes were lost (pkg/resume in Go), and only there:
// the same text later is output. The notice is not output: counting it as
// the bytes it stands for keeps the count the session's offset, so that the
// next reattach neither skips nor repeats.
const NOTICE_PREFIX = Array.from("\r\n[terminal-apiserver: ", (c) => c.charCodeAt(0));
const NOTICE_SUFFIX = Array.from(" bytes of output are no longer kept]\r\n", (c) => c.charCodeAt(0));
const NOTICE_MAX_DIGITS = 15; // within what a number holds exactly
const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

/** OutputCounter counts one attach's output bytes as the server does (its opening notice of lost output as the bytes lost). */
export class OutputCounter {
  private n = 0;
  // Every byte so far may be the notice's: pending of them, of which
  // digits are the count's (lost) and suffix the suffix's.
  private matching = true;
  private pending = 0;
  private digits = 0;
  private suffix = 0;
  private lost = 0;

  /** The bytes counted; an attach that broke inside its notice counts none of it. */
  get offset(): number {
    return this.n;
  }

  count(p: Uint8Array): void {
    let i = 0;
    for (; this.matching && i < p.length; i++) {
      if (!this.step(p[i])) {
        this.add(this.pending); // not a notice: output, like the rest
        this.matching = false;
        break;
      }
      this.pending++;
      if (this.suffix === NOTICE_SUFFIX.length) {
        this.add(this.lost);
        this.matching = false;
        i++;
        break;
      }
    }
    if (!this.matching) this.add(p.length - i);
  }

  private step(b: number): boolean {
    if (this.pending < NOTICE_PREFIX.length) return b === NOTICE_PREFIX[this.pending];
    if (this.suffix === 0 && b >= 0x30 && b <= 0x39 && this.digits < NOTICE_MAX_DIGITS) {
      this.lost = this.lost * 10 + (b - 0x30);
      this.digits++;
      return true;
    }
    if (this.digits > 0 && b === NOTICE_SUFFIX[this.suffix]) {
      this.suffix++;
      return true;
    }
    return false;
  }

  private add(k: number): void {
    this.n = Math.min(this.n + k, MAX_OFFSET);
  }
}

/** parseStatus reads the final metav1.Status of an attach. */
export function parseStatus(payload: Uint8Array): End {
  let st: {
    status?: string;
    reason?: string;
    message?: string;
    details?: { causes?: { type?: string; reason?: string; message?: string }[] };
  };
  try {
    st = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return { kind: "status", success: false, exitCode: null, reason: "InvalidStatus", message: "the server's final status could not be read" };
  }
  const success = st.status === "Success";
  let exitCode: number | null = success ? 0 : null;
  for (const c of st.details?.causes ?? []) {
    // client-go reads the cause's reason; the kubelet and this server set its type.
    if ((c.type === "ExitCode" || c.reason === "ExitCode") && c.message !== undefined && /^\d+$/.test(c.message)) {
      exitCode = Number(c.message);
    }
  }
  return { kind: "status", success, exitCode, reason: st.reason ?? "", message: st.message ?? "" };
}

function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}

const MAX_REFUSED = 3;

/** The state of a Connection, for a status line. */
export type State =
  | { kind: "connecting" }
  | { kind: "running"; protocol: string }
  | { kind: "reconnecting"; attempt: number; since: number }
  | { kind: "closed"; exitCode: number | null; reason: string; message: string };

/** What the API says of a session after a connection dropped: still running, or closed and why. */
export type Verdict = { open: true } | { open: false; exitCode: number | null; reason: string; message: string };

export interface ConnectionOptions {
  /** The page's origin, or the API proxy's. */
  base: string;
  namespace: string;
  name: string;
  uid?: string;
  stdin: boolean;
  tty: boolean;
  /** Ask the API whether the session is still open (GET the TerminalSession). */
  check: () => Promise<Verdict>;
  output: (data: Uint8Array) => void;
  state: (s: State) => void;
  /** Give up reconnecting after this long, in ms (default two minutes, as kubectl terminal). */
  reconnectFor?: number;
  WebSocket?: WebSocketConstructor;
  /** Further WebSocket subprotocols: credentials for a proxy on the way (Attachment). */
  extraProtocols?: string[];
  /** Timers, for tests. */
  setTimeout?: (f: () => void, ms: number) => unknown;
}

/**
 * Connection is an attach that reattaches by itself: when the connection
 * drops while the session runs, it reattaches with since= the bytes it has,
 * backing off from 250 ms to 5 s, until the session closes or reconnectFor
 * passes. Input typed while it reconnects is dropped, as a terminal whose
 * line is down drops it: the status line says so.
 */
export class Connection {
  private att: Attachment | null = null;
  private offset = 0;
  private closed = false;
  private lastSize: [number, number] | null = null;
  private attempt = 0;
  private lostAt = 0;
  // Attaches in a row that were refused before they opened: the browser
  // hides the HTTP status of a refused WebSocket, so after a few the
  // Connection stops and says so (a 403, or a session of the same name
  // created since: uid).
  private refused = 0;

  constructor(private readonly o: ConnectionOptions) {
    this.open();
  }

  /** Output bytes received in all: the session's offset. */
  get received(): number {
    return Math.min(this.offset + (this.att?.received ?? 0), MAX_OFFSET);
  }

  send(data: string | Uint8Array): void {
    this.att?.send(data);
  }

  resize(cols: number, rows: number): void {
    this.lastSize = [cols, rows];
    this.att?.resize(cols, rows);
  }

  /** close detaches; the session goes on until deleted or its detach grace period ends. */
  close(): void {
    this.closed = true;
    this.att?.close();
  }

  private open(): void {
    const since = this.received;
    this.offset = since;
    this.o.state(this.attempt === 0 ? { kind: "connecting" } : { kind: "reconnecting", attempt: this.attempt, since });
    const url = attachURL(this.o.base, this.o.namespace, this.o.name, { stdin: this.o.stdin, tty: this.o.tty, since, uid: this.o.uid });
    const att = new Attachment(
      url,
      {
        output: (d) => {
          this.attempt = 0;
          this.o.output(d);
        },
        open: (protocol) => {
          this.refused = 0;
          this.o.state({ kind: "running", protocol });
          if (this.lastSize) att.resize(...this.lastSize);
        },
        end: (e) => this.ended(att, e),
      },
      this.o.WebSocket,
      this.o.extraProtocols,
    );
    this.att = att;
  }

  private ended(att: Attachment, e: End): void {
    if (att !== this.att) return;
    this.offset += att.received;
    this.att = null;
    if (this.closed || e.kind === "closed") return;
    if (e.kind === "status") {
      this.closed = true;
      if (e.exitCode !== null) {
        this.o.state({ kind: "closed", exitCode: e.exitCode, reason: "Exited", message: "" });
        return;
      }
      // Closed otherwise (deleted, timed out, the target gone): the
      // session's status says why better than the attach's last words.
      const fallback: State = { kind: "closed", exitCode: null, reason: e.reason || "Failed", message: e.message };
      this.o.check().then(
        (v) => this.o.state(v.open ? fallback : { kind: "closed", exitCode: v.exitCode, reason: v.reason, message: v.message }),
        () => this.o.state(fallback),
      );
      return;
    }
    if (!att.opened) this.refused++;
    if (this.attempt === 0) this.lostAt = Date.now();
    this.attempt++;
    this.o.state({ kind: "reconnecting", attempt: this.attempt, since: this.offset });
    this.o
      .check()
      .then(
        (v) => v,
        (): Verdict => ({ open: true }), // the API is unreachable too: keep trying
      )
      .then((v) => {
        if (this.closed) return;
        if (!v.open) {
          this.closed = true;
          this.o.state({ kind: "closed", exitCode: v.exitCode, reason: v.reason, message: v.message });
          return;
        }
        if (this.refused >= MAX_REFUSED) {
          this.closed = true;
          this.o.state({ kind: "closed", exitCode: null, reason: "AttachRefused",
            message: "the server refused the attach: you may lack the permission, or the session was replaced" });
          return;
        }
        if (Date.now() - this.lostAt > (this.o.reconnectFor ?? 120_000)) {
          this.closed = true;
          this.o.state({ kind: "closed", exitCode: null, reason: "Unreachable", message: "the connection could not be restored" });
          return;
        }
        const wait = Math.min(5000, 250 * 2 ** (this.attempt - 1));
        (this.o.setTimeout ?? setTimeout)(() => {
          if (!this.closed) this.open();
        }, wait);
      });
  }
}
