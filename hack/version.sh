#!/usr/bin/env bash
# Prints the -ldflags that stamp a build with its version (git describe), commit,
# commit date and whether the tree had uncommitted changes (pkg/version): make
# and the hack/ scripts build every binary with them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pkg=github.com/meshery/terminal-apiserver/pkg/version
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "-X $pkg.version=${VERSION:-dev}"
  exit 0
fi
modified=false
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || modified=true
printf -- '-X %s.version=%s -X %s.commit=%s -X %s.date=%s -X %s.modified=%s\n' \
  "$pkg" "${VERSION:-$(git describe --tags --always 2>/dev/null || echo dev)}" \
  "$pkg" "$(git rev-parse HEAD)" \
  "$pkg" "$(git log -1 --format=%cI)" \
  "$pkg" "$modified"
