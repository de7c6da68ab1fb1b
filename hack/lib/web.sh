#!/usr/bin/env bash
# The console's front end (web/): Node.js, its npm packages and Chromium.
# Sourced after hack/lib/local.sh.

WEB_DIR=$ROOT/web

# web_deps: node and npm (Debian's, if the machine has none), and
# web/node_modules exactly as web/package-lock.json says (npm ci), reinstalled
# only when the lock file changes.
web_deps() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    install_debian_packages nodejs npm
  fi
  local stamp=$WEB_DIR/node_modules/.installed-lock want
  want=$(sha256sum "$WEB_DIR/package-lock.json" | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
    return 0
  fi
  log "npm ci (web/package-lock.json)"
  (cd "$WEB_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" >"$stamp"
}

# chromium_deps: Debian's Chromium, which the browser tests drive.
chromium_deps() {
  install_debian_packages chromium
}
