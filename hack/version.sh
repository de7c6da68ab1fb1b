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
# Modified: changes to tracked files or new files not ignored (a new .go file
# is compiled in), as Go's own vcs.modified counts them.
modified=false
[[ -z $(git status --porcelain 2>/dev/null) ]] || modified=true
version=${VERSION:-$(git describe --tags --always 2>/dev/null || echo dev)}
[[ $modified == false || -n ${VERSION:-} ]] || version+=-dirty
printf -- '-X %s.version=%s -X %s.commit=%s -X %s.date=%s -X %s.modified=%s\n' \
  "$pkg" "$version" \
  "$pkg" "$(git rev-parse HEAD)" \
  "$pkg" "$(git log -1 --format=%cI)" \
  "$pkg" "$modified"
