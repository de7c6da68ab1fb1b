// Errors a person can act on: an exit code, a session closed by someone else
// with its reason, a pod that is not running, and the console gone away.

import assert from "node:assert/strict";
import { test } from "node:test";

import { kubectl, openTerminal, shot, statusLine, typeInto, waitFor, fixture } from "./harness.ts";

const f = fixture("browser-err", ["target"], (ns) =>
  // A pod that cannot be scheduled: it never runs.
  kubectl(["-n", ns, "run", "stuck", "--image=terminal.local/busybox:1", "--image-pull-policy=Never", "--overrides", JSON.stringify({ spec: { nodeSelector: { "no-such-label": "x" } } }), "--", "sleep", "3600"]),
);

const closedLine = () =>
  waitFor("the terminal to close", async () => {
    const s = await statusLine(f.page);
    return s.startsWith("closed") ? s : undefined;
  });

test("a shell that exits 3 says so", async () => {
  await openTerminal(f.page, "target");
  await typeInto(f.page, "exit 3\r");
  assert.equal(await closedLine(), "closed: Exited, exit code 3");
  await shot(f.page, "errors-1-exit-3");
});

test("a session deleted by someone else says it was deleted", async () => {
  await openTerminal(f.page, "target");
  const name = await waitFor("the session's name", async () => /running · (\S+)/.exec(await statusLine(f.page))?.[1]);
  kubectl(["-n", f.ns, "delete", "terminalsession", name, "--wait=false"]);
  assert.match(await closedLine(), /^closed: Deleted/);
  await shot(f.page, "errors-2-deleted");
});

test("a pod that is not running is refused before a session is made", async () => {
  await f.page.getByRole("treeitem", { name: /^stuck\b/ }).click();
  await f.page.getByRole("button", { name: "Connect" }).click();
  const alert = f.page.getByRole("alert").filter({ hasText: "stuck" });
  assert.match((await alert.textContent()) ?? "", /Pod stuck is not running \(Pending\)/);
  assert.equal(kubectl(["-n", f.ns, "get", "terminalsessions", "-o", "name", "--field-selector", "spec.target.pod=stuck"]).trim(), "");
  await shot(f.page, "errors-3-not-running");
});

test("when the console's process goes away, the f.page says the API is unreachable", async () => {
  f.ui.stop();
  await waitFor("the unreachable message", async () => (await f.page.getByText(/the Kubernetes API is unreachable/).count()) > 0, 15_000);
  await shot(f.page, "errors-4-unreachable");
});
