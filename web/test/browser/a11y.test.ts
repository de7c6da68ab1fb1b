// Keyboard and accessibility: the topology (ARIA tree) and the drawer (ARIA
// tabs) work from the keyboard, Connect puts the focus in the terminal, and
// axe-core finds no serious or critical violation in the main views.

import assert from "node:assert/strict";
import { test } from "node:test";

import { axeSource, shot, statusLine, waitFor, fixture } from "./harness.ts";

const f = fixture("browser-a11y", ["kbd"]);

async function axe(view: string): Promise<void> {
  // Evaluated through the DevTools protocol: the console's CSP (rightly)
  // refuses inline scripts.
  await f.page.evaluate(axeSource());
  const violations = await f.page.evaluate(async () => {
    // @ts-expect-error axe is the injected script's global
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return (r.violations as { id: string; impact: string; help: string; nodes: { target: string[] }[] }[]).map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(" ")) }));
  });
  const serious = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(serious, [], `${view}: axe-core found serious or critical violations`);
}

const focused = () => f.page.evaluate(() => ({ role: document.activeElement?.getAttribute("role") ?? "", text: document.activeElement?.textContent ?? "", cls: document.activeElement?.className ?? "" }));

test("the main view passes axe-core", async () => {
  await axe("main view");
});

test("from the keyboard: tree to pod, drawer tabs, Connect, and the focus in the terminal", async () => {
  await f.page.locator('[role="tree"] [tabindex="0"]').focus();
  assert.equal((await focused()).role, "treeitem");
  await f.page.keyboard.press("End");
  assert.match((await focused()).text, /^kbd/);
  await f.page.keyboard.press("Enter");
  await f.page.getByRole("tab", { name: "Terminal", exact: true }).waitFor();
  await f.page.getByRole("tab", { name: "Terminal", exact: true }).focus();
  await f.page.keyboard.press("ArrowLeft");
  assert.equal((await focused()).text, "Details");
  assert.equal(await f.page.getByRole("tab", { name: "Details" }).getAttribute("aria-selected"), "true");
  await f.page.keyboard.press("ArrowRight");
  await f.page.keyboard.press("Tab"); // into the panel: the pod picker
  await f.page.getByRole("button", { name: "Connect" }).focus();
  await f.page.keyboard.press("Enter");
  await waitFor("the terminal to run", async () => (await statusLine(f.page)).startsWith("running"));
  await waitFor("the focus in the terminal", async () => (await focused()).cls.includes("xterm-helper-textarea"));
  await shot(f.page, "a11y-1-terminal-focused");
  await axe("drawer with a terminal");
});
