// Broadcast input: one keystroke stream into every marked terminal, and none
// into a terminal left out.

import assert from "node:assert/strict";
import { test } from "node:test";

import { openTerminal, screenText, shot, typeInto, waitFor, fixture } from "./harness.ts";

const f = fixture("browser-bcast", ["one", "two", "three"]);

test("typing once with broadcast on reaches every marked terminal, and only those", async () => {
  for (const pod of ["one", "two", "three"]) await openTerminal(f.page, pod);
  await f.page.getByRole("button", { name: "Broadcast input" }).click();
  await f.page.getByRole("checkbox", { name: "Broadcast to three/main" }).uncheck();
  const banner = f.page.getByText(/Broadcast is on/);
  assert.match(await banner.textContent() ?? "", /all 2 marked terminals/);
  await shot(f.page, "broadcast-1-on");

  await f.page.getByRole("tab", { name: "two/main" }).click();
  await typeInto(f.page, "echo bc-$((6*7))-$HOSTNAME\r");
  const screenOf = async (pod: string) => {
    await f.page.getByRole("tab", { name: `${pod}/main` }).click();
    return screenText(f.page);
  };
  await waitFor("the echo in one", async () => (await screenOf("one")).includes("bc-42-one\n"));
  await waitFor("the echo in two", async () => (await screenOf("two")).includes("bc-42-two\n"));
  assert.ok(!(await screenOf("three")).includes("bc-"), "the unmarked terminal got nothing");
  await shot(f.page, "broadcast-2-reached");

  await f.page.getByRole("button", { name: "Broadcast input" }).click();
  assert.equal(await f.page.getByText(/Broadcast is on/).count(), 0);
  await f.page.getByRole("tab", { name: "one/main" }).click();
  await typeInto(f.page, "echo only-one\r");
  await waitFor("the echo in one", async () => (await screenOf("one")).includes("only-one\n"));
  assert.ok(!(await screenOf("two")).includes("only-one"), "with broadcast off, input stays in its terminal");
});
