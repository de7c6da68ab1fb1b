#!/usr/bin/env bash
# Builds the browser console (web/) into pkg/console/dist, which kubectl-terminal
# embeds. The built files are committed, so that a clean clone builds with plain
# `go build`/`go install`; like generated code they must match their sources:
#
#   hack/build-web.sh           type-check and build into pkg/console/dist
#   hack/build-web.sh --verify  type-check, build into a temporary folder, and fail
#                               if it differs from pkg/console/dist (make verify)
#   hack/build-web.sh --test    the front end's unit tests (node --test)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"
# shellcheck source=hack/lib/web.sh
source "$ROOT/hack/lib/web.sh"

web_deps
cd "$WEB_DIR"
case ${1:-} in
--test)
  node build.mjs --tests
  node --test --test-reporter=dot _output/test/
  ;;
--verify)
  npx --no-install tsc --noEmit -p .
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  node build.mjs --out "$tmp"
  if ! diff -r "$tmp" "$ROOT/pkg/console/dist" >/dev/null; then
    diff -rq "$tmp" "$ROOT/pkg/console/dist" >&2 || true
    die "pkg/console/dist is stale: run hack/build-web.sh (or make build) and commit it"
  fi
  ;;
"")
  npx --no-install tsc --noEmit -p .
  node build.mjs
  for f in "$ROOT"/pkg/console/dist/*; do
    log "$(basename "$f"): $(wc -c <"$f") bytes, $(gzip -9c "$f" | wc -c) gzipped"
  done
  ;;
*) die "unknown argument $1" ;;
esac
