#!/usr/bin/env bash
# Fails when the chart's generated templates differ from what hack/update-chart.sh
# makes of the kustomize base (make verify).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ROOT/hack/update-chart.sh" "$tmp"
for f in "$tmp"/templates/* "$tmp"/files/*; do
  rel=${f#"$tmp"/}
  if ! diff -u "$ROOT/charts/terminal-apiserver/$rel" "$f" >&2; then
    echo "charts/terminal-apiserver/$rel is out of date: run hack/update-chart.sh" >&2
    exit 1
  fi
done
