// Builds the console into ../pkg/console/dist (embedded in kubectl-terminal,
// committed: `make verify` rebuilds it into a temporary folder with --out
// and fails when it differs), or the tests for `node --test`: --tests (unit,
// into _output/test) and --browser-tests (into _output/browser-test, run by
// hack/test-browser.sh).
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { build } from "esbuild";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : (process.argv[i + 1] ?? "");
};
const common = { bundle: true, logLevel: "warning", legalComments: "none", charset: "utf8" };

async function tests(dir, out) {
  rmSync(out, { recursive: true, force: true });
  await build({
    ...common,
    entryPoints: readdirSync(dir).filter((f) => f.endsWith(".test.ts")).map((f) => `${dir}/${f}`),
    outdir: out,
    outExtension: { ".js": ".mjs" },
    platform: "node",
    format: "esm",
    target: "node20",
    // Loaded from node_modules as they are: playwright-core drives a
    // browser process and reads its own files.
    external: ["playwright-core", "axe-core"],
  });
}

if (process.argv.includes("--tests")) {
  await tests("test/unit", "_output/test");
} else if (process.argv.includes("--browser-tests")) {
  await tests("test/browser", "_output/browser-test");
} else {
  const out = arg("--out") ?? "../pkg/console/dist";
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    ...common,
    entryPoints: { app: "src/main.ts" },
    outdir: out,
    platform: "browser",
    format: "esm",
    target: ["chrome120", "firefox120", "safari17"],
    minify: true,
    sourcemap: false,
  });
  copyFileSync("src/index.html", `${out}/index.html`);
}
