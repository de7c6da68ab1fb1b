#!/usr/bin/env bash
# The console's tests in a real browser: Debian's Chromium, headless, driven by
# playwright-core, against `kubectl terminal ui` on the local control plane and
# its real node. Uses the running control plane (make up) if there is one, else
# starts one and tears it down. Screenshots of each step go to _output/browser/.
#
#   BROWSER_ARGS   extra `node --test` arguments, e.g. BROWSER_ARGS='--test-name-pattern=resize'
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"
# shellcheck source=hack/lib/web.sh
source "$ROOT/hack/lib/web.sh"
cd "$ROOT"

started=0
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if ((started)); then
    "$ROOT/hack/local-down.sh" || rc=$((rc == 0 ? 1 : rc))
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

web_deps
chromium_deps
if [[ ! -f $STATE_ENV ]] || ! pid_of kube-apiserver >/dev/null || ! pid_of terminal-apiserver >/dev/null; then
  started=1
  "$ROOT/hack/local-up.sh"
fi
# shellcheck disable=SC1090
source "$STATE_ENV"
[[ ${LOCAL_NODE:-real} == real ]] || die "the browser tests need the real node (LOCAL_NODE=real make up)"
# The plugin the tests run, built from this tree (make up builds it too).
go build -ldflags "$(hack/version.sh)" -o "$ROOT/_output/bin/kubectl-terminal" ./cmd/kubectl-terminal
# kubectl: the pinned one make up built, not whatever the machine has.
export PATH=$TOOLS_BIN:$ROOT/_output/bin:$PATH REPO_ROOT=$ROOT KUBECTL_TERMINAL=$ROOT/_output/bin/kubectl-terminal
rm -rf "$ROOT/_output/browser"
cd "$WEB_DIR"
node build.mjs --browser-tests
# One process per test file, three at a time: each file has its own namespace,
# console and browser. A file's tests run in order (they share a page).
# shellcheck disable=SC2086 # BROWSER_ARGS is a list of flags.
node --test --test-concurrency=3 --test-timeout=300000 ${BROWSER_ARGS:-} _output/browser-test/
log "screenshots: _output/browser/"
