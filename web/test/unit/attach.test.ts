// Unit tests of the attach protocol module against a fake WebSocket: frames
// in and out, both protocols, the final status, and reattaching with since=.
// The real server is exercised by the browser tests (test/browser).
import assert from "node:assert/strict";
import { test } from "node:test";

import { Attachment, attachURL, Connection, MAX_INPUT_FRAME, OutputCounter, parseStatus, type State, type Verdict, type WebSocketLike } from "../../src/attach/attach.ts";

class FakeWS implements WebSocketLike {
  static all: FakeWS[] = [];
  binaryType = "blob";
  protocol = "";
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: (string | Uint8Array)[] = [];
  constructor(readonly url: string, readonly protocols: string[]) {
    FakeWS.all.push(this);
  }
  send(data: string | ArrayBufferView | ArrayBuffer): void {
    this.sent.push(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer).slice());
  }
  close(code = 1000): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  // The server's side.
  accept(protocol: string): void {
    this.protocol = protocol;
    this.readyState = 1;
    this.onopen?.({});
  }
  out(channel: number, text: string, base64 = false): void {
    const b = new TextEncoder().encode(text);
    if (base64) {
      this.onmessage?.({ data: String(channel) + Buffer.from(b).toString("base64") });
      return;
    }
    const f = new Uint8Array(b.length + 1);
    f[0] = channel;
    f.set(b, 1);
    this.onmessage?.({ data: f.buffer });
  }
  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
}

const dec = new TextDecoder();

test("attachURL names the subresource and the query of TerminalSessionAttachOptions", () => {
  assert.equal(
    attachURL("http://127.0.0.1:8080/", "team-a", "shell-demo-x7k2p", { stdin: true, tty: true, since: 42, uid: "u-1" }),
    "ws://127.0.0.1:8080/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/shell-demo-x7k2p/attach?stdout=true&stdin=true&tty=true&since=42&uid=u-1",
  );
  const ro = attachURL("https://example.com", "ns", "s", { stdin: false, tty: true });
  assert.ok(ro.startsWith("wss://example.com/") && !ro.includes("stdin") && !ro.includes("since"), ro);
});

for (const base64 of [false, true]) {
  const proto = base64 ? "v4.base64.channel.k8s.io" : "v5.channel.k8s.io";
  test(`${proto}: output, input, resize and the exit code`, () => {
    FakeWS.all = [];
    const got: string[] = [];
    let end: unknown;
    const a = new Attachment("ws://x/attach", { output: (d) => got.push(dec.decode(d)), end: (e) => (end = e) }, FakeWS);
    const ws = FakeWS.all[0];
    assert.deepEqual(ws.protocols, ["v5.channel.k8s.io", "v4.base64.channel.k8s.io"]);
    ws.accept(proto);
    ws.out(1, "héllo ", base64);
    ws.out(2, "err", base64);
    assert.deepEqual(got, ["héllo ", "err"]);
    assert.equal(a.received, new TextEncoder().encode("héllo err").length);

    a.send("ls\r");
    a.resize(80, 24);
    const frames = ws.sent.map((f) => (typeof f === "string" ? [Number(f[0]), Buffer.from(f.slice(1), "base64").toString()] : [f[0], dec.decode(f.subarray(1))]));
    assert.deepEqual(frames, [
      [0, "ls\r"],
      [4, '{"Width":80,"Height":24}'],
    ]);
    if (base64) assert.equal(typeof ws.sent[0], "string");

    ws.out(3, JSON.stringify({ status: "Failure", reason: "NonZeroExitCode", message: "command terminated with non-zero exit code: 3", details: { causes: [{ type: "ExitCode", message: "3" }] } }), base64);
    ws.close(1000);
    assert.deepEqual(end, { kind: "status", success: false, exitCode: 3, reason: "NonZeroExitCode", message: "command terminated with non-zero exit code: 3" });
  });
}

test("credentials for a proxy on the way go as further subprotocols", () => {
  FakeWS.all = [];
  new Attachment("ws://x", {}, FakeWS, ["base64url.console.terminal.meshery.io.abc"]);
  assert.deepEqual(FakeWS.all[0].protocols, ["v5.channel.k8s.io", "v4.base64.channel.k8s.io", "base64url.console.terminal.meshery.io.abc"]);
});

test("a large paste is split into frames the server accepts", () => {
  FakeWS.all = [];
  const a = new Attachment("ws://x", {}, FakeWS);
  FakeWS.all[0].accept("v5.channel.k8s.io");
  a.send(new Uint8Array(2 * MAX_INPUT_FRAME + 5).fill(97));
  assert.deepEqual(
    FakeWS.all[0].sent.map((f) => f.length),
    [MAX_INPUT_FRAME + 1, MAX_INPUT_FRAME + 1, 6],
  );
});

test("frames a hostile or broken server sends are dropped, not thrown", () => {
  FakeWS.all = [];
  const got: Uint8Array[] = [];
  const a = new Attachment("ws://x", { output: (d) => got.push(d) }, FakeWS);
  const ws = FakeWS.all[0];
  ws.accept("v4.base64.channel.k8s.io");
  for (const data of ["", "1!!!not base64", "9AAAA", {}, new ArrayBuffer(0), 42]) ws.onmessage?.({ data });
  assert.equal(got.length, 0);
  assert.equal(a.received, 0);
  assert.deepEqual(parseStatus(new TextEncoder().encode("{")), { kind: "status", success: false, exitCode: null, reason: "InvalidStatus", message: "the server's final status could not be read" });
  assert.equal((parseStatus(new TextEncoder().encode('{"status":"Success"}')) as { exitCode: number }).exitCode, 0);
});

function connection(check: () => Promise<Verdict>) {
  FakeWS.all = [];
  const states: State[] = [];
  const out: string[] = [];
  const timers: (() => void)[] = [];
  const c = new Connection({
    base: "http://127.0.0.1:1",
    namespace: "ns",
    name: "s",
    uid: "u",
    stdin: true,
    tty: true,
    check,
    output: (d) => out.push(dec.decode(d)),
    state: (s) => states.push(s),
    WebSocket: FakeWS,
    setTimeout: (f) => timers.push(f),
  });
  return { c, states, out, timers };
}

const tick = () => new Promise((r) => setImmediate(r));

test("a dropped connection reattaches with since= the bytes received, and the last size", async () => {
  const { c, states, out, timers } = connection(async () => ({ open: true }));
  const first = FakeWS.all[0];
  first.accept("v5.channel.k8s.io");
  c.resize(100, 30);
  first.out(1, "0123456789");
  first.drop();
  await tick();
  assert.deepEqual(states.at(-1), { kind: "reconnecting", attempt: 1, since: 10 });
  assert.equal(timers.length, 1);
  timers[0]();
  const second = FakeWS.all[1];
  assert.match(second.url, /since=10&uid=u$/);
  second.accept("v5.channel.k8s.io");
  assert.equal(dec.decode((second.sent[0] as Uint8Array).subarray(1)), '{"Width":100,"Height":30}');
  second.out(1, "abc");
  assert.equal(c.received, 13);
  assert.deepEqual(out, ["0123456789", "abc"]);
  second.out(3, '{"status":"Success"}');
  second.close();
  assert.deepEqual(states.at(-1), { kind: "closed", exitCode: 0, reason: "Exited", message: "" });
  assert.equal(timers.length, 1, "no reattach after the session's end");
});

test("after an attach opened with a notice of lost output, the next asks for the session's offset, not the bytes shown", async () => {
  const { c, timers } = connection(async () => ({ open: true }));
  const first = FakeWS.all[0];
  first.accept("v5.channel.k8s.io");
  first.out(1, "abc");
  first.drop();
  await tick();
  timers[0]();
  const second = FakeWS.all[1];
  assert.match(second.url, /since=3&/);
  second.accept("v5.channel.k8s.io");
  // The same words as pkg/resume's Notice(500), which the server writes
  // first in an attach whose since is no longer kept.
  second.out(1, NOTICE.slice(0, 9));
  second.out(1, NOTICE.slice(9) + "tail");
  second.drop();
  await tick();
  timers[1]();
  assert.match(FakeWS.all[2].url, /since=507&/);
  assert.equal(c.received, 507);
});

const NOTICE = "\r\n[terminal-apiserver: 500 bytes of output are no longer kept]\r\n";
const counted = (...writes: string[]) => {
  const k = new OutputCounter();
  for (const w of writes) k.count(new TextEncoder().encode(w));
  return k.offset;
};

test("a notice anywhere but an attach's first bytes, or only like one, counts as output", () => {
  for (const text of ["x" + NOTICE, "\r" + NOTICE, "\r\n[terminal-apiserver: 12 bytes of output are kept]\r\n", "\r\n[terminal-apiserver: 1234567890123456 bytes of output are no longer kept]\r\n"]) {
    assert.equal(counted(text), text.length, JSON.stringify(text));
  }
  assert.equal(counted(NOTICE + NOTICE), 500 + NOTICE.length, "a second notice is output");
});

test("an attach that broke inside its notice counts none of it", () => {
  assert.equal(counted(NOTICE.slice(0, 20)), 0);
  assert.equal(counted("\r\n[terminal-apiserver: 999999999999999 bytes of output are no longer kept]\r\n", "x"), 999999999999999 + 1);
});

test("a drop when the session has closed ends with the API's reason, without reattaching", async () => {
  const { states, timers } = connection(async () => ({ open: false, exitCode: 137, reason: "Deleted", message: "deleted by alice" }));
  FakeWS.all[0].accept("v5.channel.k8s.io");
  FakeWS.all[0].drop();
  await tick();
  assert.deepEqual(states.at(-1), { kind: "closed", exitCode: 137, reason: "Deleted", message: "deleted by alice" });
  assert.equal(timers.length, 0);
});

test("a session closed otherwise than by its process is explained by the API's status", async () => {
  const { states, timers } = connection(async () => ({ open: false, exitCode: null, reason: "IdleTimeout", message: "no input for 30m0s" }));
  FakeWS.all[0].accept("v5.channel.k8s.io");
  FakeWS.all[0].out(3, JSON.stringify({ status: "Failure", reason: "InternalError", message: "session closed (IdleTimeout): no input for 30m0s" }));
  FakeWS.all[0].close();
  await tick();
  assert.deepEqual(states.at(-1), { kind: "closed", exitCode: null, reason: "IdleTimeout", message: "no input for 30m0s" });
  assert.equal(timers.length, 0);
});

test("attaches refused before they open stop after three, with a reason", async () => {
  const { states, timers } = connection(async () => ({ open: true }));
  for (let i = 0; i < 3; i++) {
    FakeWS.all[i].drop();
    await tick();
    if (i < 2) timers[i]();
  }
  assert.equal(FakeWS.all.length, 3);
  assert.equal((states.at(-1) as { reason: string }).reason, "AttachRefused");
});

test("close detaches without reattaching", async () => {
  const { c, states, timers } = connection(async () => ({ open: true }));
  FakeWS.all[0].accept("v5.channel.k8s.io");
  c.close();
  await tick();
  assert.equal(timers.length, 0);
  assert.equal(states.at(-1)?.kind, "running");
});
