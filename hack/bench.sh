#!/usr/bin/env bash
# Benchmarks (make bench): storage and recording costs on an embedded NATS server, then
# terminal sessions side by side with direct pods/exec on the local control
# plane (started if needed, left running). BENCH_ARGS go to test/bench, e.g.
# BENCH_ARGS='-sessions 10 -echo 50 -bulk-mib 16 -idle 100' for a quick run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
go test -run '^$' -bench . -benchmem -count "${BENCH_COUNT:-1}" ./pkg/kvstore/
# What recording a transcript costs per byte of output, storage included.
go test -run '^$' -bench BenchmarkRecorder -benchmem -count "${BENCH_COUNT:-1}" ./pkg/bridge/
# 1,000 idle sessions of one user: lift the per-user limit for the run. A
# fresh server process, so that its memory figure does not depend on what
# ran on it before (freed memory a process keeps is reused, not grown).
# The recording-cost rounds restart it with these flags and theirs.
export BENCH_SERVER_ARGS="--max-sessions-per-user=0 ${TERMINAL_APISERVER_EXTRA_ARGS:-}" REPO_ROOT=$ROOT
TERMINAL_APISERVER_RESTART=1 TERMINAL_APISERVER_EXTRA_ARGS="$BENCH_SERVER_ARGS" hack/local-up.sh >/dev/null
# shellcheck disable=SC1091
source _output/local/env.sh
# shellcheck source=hack/lib/local.sh
source hack/lib/local.sh
# Under LOCAL_NODE=kwok the sessions' processes are this machine's and
# outlive them: do not leave a thousand behind for the next run. (On the
# real node the benchmark deletes its own pod, which ends them.)
trap kill_kwok_leftovers EXIT
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags.
go run ./test/bench ${BENCH_ARGS:-}

# The browser console beside kubectl terminal on one pod (docs/console.md):
# Connect to first output on screen, keystroke to echo on screen.
# CONSOLE_BENCH_ARGS, e.g. '--connects 5 --keys 50' for a quick run.
# shellcheck source=hack/lib/web.sh
source hack/lib/web.sh
web_deps
chromium_deps
go build -ldflags "$(hack/version.sh)" -o _output/bin/kubectl-terminal ./cmd/kubectl-terminal
(
  cd web
  node build.mjs --bench
  # shellcheck disable=SC2086 # CONSOLE_BENCH_ARGS is a list of flags.
  PATH=$TOOLS_BIN:$ROOT/_output/bin:$PATH REPO_ROOT=$ROOT KUBECTL_TERMINAL=$ROOT/_output/bin/kubectl-terminal \
    node _output/bench/latency.mjs ${CONSOLE_BENCH_ARGS:-}
)

# Last, the in-cluster install (artifacts/deploy/overlays/local, which takes
# the APIService from make up's server and gives it back): its containers'
# memory and CPU as the kubelet measures them, for the manifests' requests
# and limits (docs/benchmarks.md). SIZING_ARGS, e.g. '-sizing-idle 100'.
# shellcheck disable=SC2086 # SIZING_ARGS is a list of flags.
INCLUSTER_SERVER_ARGS=--max-sessions-per-user=0 hack/test-incluster.sh go run ./test/bench -sizing ${SIZING_ARGS:-}
