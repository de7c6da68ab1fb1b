#!/usr/bin/env bash
# End-to-end tests against a real local control plane: starts a fresh one (local-up),
# runs `go test ./test/e2e/...`, and always tears it down (local-down), keeping the logs
# in _output/local/logs/. On failure it prints the tail of every component's log.
#
# The tests find the cluster through the environment of _output/local/env.sh, which is
# sourced here: KUBECONFIG (contexts admin, alice, bob, viewer), TERMINAL_APISERVER_PORT,
# TERMINAL_APISERVER_NATS_DATA_DIR, KWOK_EXEC_MARKER, KUBE_AUDIT_LOG, ...
#
#   E2E_REUSE=1   use (or start) the running control plane and leave it running
#   E2E_ARGS      extra `go test` arguments, e.g. E2E_ARGS='-run TestAttach -v'
#   E2E_BROWSER=0 leave out the browser tests (hack/test-browser.sh)
#   E2E_INCLUSTER=0 leave out the in-cluster install (hack/test-incluster.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"
cd "$ROOT"

reuse=${E2E_REUSE:-0}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)); then
    log "e2e failed (exit $rc); component logs:"
    local c
    for c in "${COMPONENTS[@]}"; do log_tail "$c" 30; done
  fi
  if [[ $reuse != 1 ]]; then
    "$ROOT/hack/local-down.sh" || rc=$((rc == 0 ? 1 : rc))
  fi
  log "logs: ${LOG_DIR#"$ROOT"/}/"
  exit "$rc"
}
trap on_exit EXIT
# Turn signals into a normal exit so the EXIT trap tears the cluster down.
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $reuse != 1 ]]; then
  # A fresh cluster: every run starts from the same state.
  "$ROOT/hack/local-down.sh"
fi
"$ROOT/hack/local-up.sh"
# shellcheck disable=SC1090
source "$STATE_ENV"
# terminal-apiserver's image (make image) in the node's containerd, for the
# tests that run it in a real runtime (test/e2e/image_test.go).
if [[ ${LOCAL_NODE:-real} == real ]]; then
  # shellcheck source=hack/lib/node.sh
  source "$ROOT/hack/lib/node.sh"
  read -r image image_file < <("$ROOT/hack/build-image.sh")
  node_ctr images import "$image_file" >/dev/null
  export TERMINAL_APISERVER_IMAGE=$image
fi
# The Helm chart linted and rendered, for the test that dry-runs it; helm
# for the test of its upgrades' lookups.
"$ROOT/hack/test-chart.sh"
export HELM_BIN
# Debian's asciinema, which plays the transcripts the tests record.
install_debian_packages asciinema
# A real nats-server (the version go.mod pins) for the tests of NATS with TLS and users.
go build -o "$ROOT/_output/bin/nats-server" github.com/nats-io/nats-server/v2

if [[ -z $(find test/e2e -name '*_test.go' -print -quit 2>/dev/null) ]]; then
  log "no e2e tests under test/e2e yet: the local control plane came up and will go down"
  exit 0
fi
# shellcheck disable=SC2086 # E2E_ARGS is a list of flags.
go test ./test/e2e/... -count=1 -timeout 20m ${E2E_ARGS:-}
# The console in a real browser, on the same control plane (E2E_BROWSER=0 skips
# it, for a quick e2e run while working on something else).
if [[ ${E2E_BROWSER:-1} == 1 ]]; then
  "$ROOT/hack/test-browser.sh"
fi
# terminal-apiserver installed in the cluster from artifacts/deploy and tested
# through the aggregation layer. Last: it takes the APIService over from the
# server the other suites use, and gives it back when done.
if [[ ${E2E_INCLUSTER:-1} == 1 ]]; then
  "$ROOT/hack/test-incluster.sh"
fi
