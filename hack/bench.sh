#!/usr/bin/env bash
# Benchmarks (make bench). Storage costs on an embedded NATS server; the
# terminal figures (setup, echo round trip, throughput, memory per session)
# join when the exec bridge does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test -run '^$' -bench . -benchmem -count "${BENCH_COUNT:-1}" ./pkg/kvstore/
