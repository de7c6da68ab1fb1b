// The Replay tab: a session's transcript played by asciinema-player in the
// console, under the console's own Content-Security-Policy, from the
// transcript subresource of the real server that recorded it.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { fixture, kubectl, openTerminal, shellReady, shot, statusLine, typeInto, waitFor } from "./harness.ts";

const f = fixture("browser-replay", ["rec"]);

/** playerText is what the visible player's terminal shows. */
function playerText(): Promise<string> {
  return f.page.evaluate(() => {
    const panel = [...document.querySelectorAll<HTMLElement>('[role="tabpanel"]')].find((p) => !p.hidden);
    return (panel?.querySelector(".ap-term")?.textContent ?? "").replace(/\u00a0/g, " ");
  });
}

test("alice replays her closed session's transcript in the console, output and timing as recorded", async () => {
  const page = f.page;
  const errors: string[] = [];
  // Refused requests the console handles (a 403 for listing namespaces
  // alice may not list) log "Failed to load resource"; anything else
  // logged as an error, a CSP refusal included, fails the test.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));

  await openTerminal(page, "rec");
  await shellReady(page);
  // Typed with arithmetic, printed as its result: the replay shows what
  // the shell printed, not only the echo of what was typed.
  const id = randomBytes(4).toString("hex");
  await typeInto(page, `echo replayed-$((6*7))-${id}\r`);
  await typeInto(page, "exit\r");
  await waitFor("the session closed", async () => (await statusLine(page)).includes("closed"));
  const session = JSON.parse(kubectl(["-n", f.ns, "get", "terminalsessions", "-o", "json"])).items[0].metadata.name as string;

  await page.getByRole("button", { name: `Replay ${session}` }).click();
  await page.getByRole("tab", { name: `Replay ${session}`, selected: true }).waitFor();
  await page.locator('[role="tabpanel"]:not([hidden]) .ap-player').waitFor();
  const status = page.locator('[role="tabpanel"]:not([hidden]) .replay .status');
  assert.match(await status.textContent() ?? "", new RegExp(`Transcript of ${session}, started`));
  // Paused at the start until played, as asciinema's player is.
  assert.ok(!(await playerText()).includes(`replayed-42-${id}`), "the player shows the end before it was played");
  await page.locator('[role="tabpanel"]:not([hidden]) .ap-overlay-start').click();
  await waitFor("the command's output in the player", async () => (await playerText()).includes(`replayed-42-${id}`), 20_000);
  await shot(page, "replay-1-played");
  assert.deepEqual(errors, [], "the page logged no errors (a refused WebAssembly compile would be one)");

  // Closing the tab leaves the session list as it was.
  await page.locator('[role="tabpanel"]:not([hidden]) .replay-tab button.close').click();
  assert.equal(await page.getByRole("tab", { name: `Replay ${session}` }).count(), 0);
});

test("a transcript alice may not read says why in the tab", async () => {
  const page = f.page;
  // Someone else's session in her namespace, which she may see (edit) but
  // not replay (no replay verb): she is refused by the server, not the page.
  kubectl(["-n", f.ns, "create", "rolebinding", "bob-edit", "--clusterrole=edit", "--user=bob"]);
  const name = `bob-${randomBytes(3).toString("hex")}`;
  const session = { apiVersion: "terminal.meshery.io/v1alpha1", kind: "TerminalSession", metadata: { name, namespace: f.ns }, spec: { target: { pod: "rec" }, command: ["sleep", "120"] } };
  await waitFor("bob's session created (once his binding is in force)", () => kubectl(["apply", "-f", "-"], { context: "bob", input: JSON.stringify(session) }));
  // Its actions are filled once the access reviews have answered.
  await waitFor("alice's row for bob's session, its access decided", async () => ((await page.locator(`tr[data-session="${name}"] .actions`).textContent()) ?? "").includes("no access"));
  assert.equal(await page.getByRole("button", { name: `Replay ${name}` }).count(), 0, "no Replay button without the replay verb");
  // Asked anyway (an old page, a hand-made URL): the server says no.
  const res = await page.evaluate(async ([ns, n]) => {
    const token = sessionStorage.getItem("terminal-console.token") ?? "";
    const r = await fetch(`/apis/terminal.meshery.io/v1alpha1/namespaces/${ns}/terminalsessions/${n}/transcript`, { headers: { "X-Console-Token": token } });
    return { code: r.status, body: await r.text() };
  }, [f.ns, name] as const);
  assert.equal(res.code, 403, res.body);
  assert.match(res.body, /replay/);
});
