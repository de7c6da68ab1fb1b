// Builds the console into ../pkg/console/dist (embedded in kubectl-terminal,
// committed: `make verify` rebuilds it into a temporary folder with --out
// and fails when it differs), or the tests for `node --test`: --tests (unit,
// into _output/test) and --browser-tests (into _output/browser-test, run by
// hack/test-browser.sh), and --bench (the console's latency, into
// _output/bench for make bench).
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { build } from "esbuild";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : (process.argv[i + 1] ?? "");
};
const common = { bundle: true, logLevel: "warning", legalComments: "none", charset: "utf8" };

async function tests(dir, out, suffix = ".test.ts") {
  rmSync(out, { recursive: true, force: true });
  await build({
    ...common,
    entryPoints: readdirSync(dir).filter((f) => f.endsWith(suffix)).map((f) => `${dir}/${f}`),
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
} else if (process.argv.includes("--bench")) {
  await tests("test/bench", "_output/bench", "latency.ts");
} else {
  const out = arg("--out") ?? "../pkg/console/dist";
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  // Names carry the content's hash and index.html their SRI digests: a
  // browser that cached app.js from whatever served this port before never
  // runs it as the console (docs/console.md).
  const result = await build({
    ...common,
    entryPoints: { app: "src/main.ts" },
    entryNames: "[name]-[hash]",
    outdir: out,
    platform: "browser",
    format: "esm",
    target: ["chrome120", "firefox120", "safari17"],
    minify: true,
    sourcemap: false,
    metafile: true,
  });
  let html = readFileSync("src/index.html", "utf8");
  for (const file of Object.keys(result.metafile.outputs)) {
    const name = path.basename(file);
    const sri = "sha384-" + createHash("sha384").update(readFileSync(file)).digest("base64");
    const ext = path.extname(name);
    html = html.replace(`"app${ext}"`, `"${name}" integrity="${sri}"`);
  }
  if (html.includes('"app.')) throw new Error("index.html names an asset the build did not make");
  writeFileSync(`${out}/index.html`, html);
}
