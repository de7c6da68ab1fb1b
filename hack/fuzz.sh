#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (go test runs one -fuzz target at a
# time). `make test` runs 2000 inputs of each (FUZZTIME=2000x) as a smoke test; `make
# fuzz` runs them for longer. A failure leaves its input under the package's
# testdata/fuzz/, which later plain `go test` runs replay.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME=${FUZZTIME:-60s}
targets=(
  "./pkg/attach FuzzWebSocketFrame"
  "./pkg/attach FuzzResizeStream"
  "./pkg/bridge FuzzOutputFraming"
  "./pkg/registry/terminalsession FuzzSessionSpec"
  "./pkg/resume FuzzCounterCountsTheSameHoweverOutputIsSplit"
  "./pkg/transcript FuzzAppendStringDecodesAsEncodingJSON"
  "./pkg/transcript FuzzRedactorPiecesMaskAsTheWhole"
)
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo ">> fuzzing $name ($pkg) for $FUZZTIME"
  go test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME"
done
