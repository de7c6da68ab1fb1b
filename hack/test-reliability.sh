#!/usr/bin/env bash
# The fault suite at full scale (docs/reliability.md), on a fresh local
# control plane (or the running one with E2E_REUSE=1): real nats-server and
# terminal-apiserver processes on loopback, killed for real, 100 sessions
# where the reliability issue says so. It ends with the table of every fault
# and figure, kept in _output/local/logs/reliability.md.
#
# make test runs the same tests at reduced scale (8 sessions) within e2e.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"

# The tests that kill something and report figures.
tests='TestNATSNodeAndStreamLeaderKilledUnderLoad|TestHundredViewersReconnectAtOnce|TestEmbeddedServerRestartReportsRunningShells|TestBridgeLostWhenReplicaKilled'

rm -f "$LOG_DIR/reliability.md"
rc=0
RELIABILITY_SCALE=full E2E_BROWSER=0 E2E_INCLUSTER=0 E2E_ARGS="-run ^($tests)\$ -v -timeout 40m" \
  "$ROOT/hack/e2e.sh" || rc=$?
if [[ -f $LOG_DIR/reliability.md ]]; then
  cat "$LOG_DIR/reliability.md"
fi
exit "$rc"
