#!/usr/bin/env bash
# Static checks run by `make verify` (and so by `make test` and CI): formatting,
# go vet, and generated code being up to date.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Tracked and new (not ignored) Go files; _output/ is ignored.
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.go')
if ((${#files[@]})); then
  echo ">> gofmt -l" >&2
  unformatted=$(gofmt -l "${files[@]}")
  if [[ -n $unformatted ]]; then
    echo "these files need gofmt -w:" >&2
    echo "$unformatted" >&2
    exit 1
  fi
fi

echo ">> go vet ./..." >&2
go vet ./...
# The image builder is a module of its own (hack/ociimage/go.mod).
(cd hack/ociimage && go vet ./...)

echo ">> hack/build-web.sh --verify" >&2
hack/build-web.sh --verify

echo ">> hack/verify-chart.sh" >&2
hack/verify-chart.sh

if [[ -x hack/verify-codegen.sh ]]; then
  echo ">> hack/verify-codegen.sh" >&2
  hack/verify-codegen.sh
fi
