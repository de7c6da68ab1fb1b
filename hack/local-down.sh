#!/usr/bin/env bash
# Stops everything hack/local-up.sh started (pid files under _output/local/pids), kills
# processes left over from `kubectl exec` on kwok, and checks that no listener is left.
# Logs, certificates and kubeconfigs stay in _output/local/ (certificates are reused by
# the next `make up`; etcd's data is wiped by it). --clean removes _output/local/ too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"
# shellcheck source=hack/lib/node.sh
source "$ROOT/hack/lib/node.sh"

clean=0
case ${1:-} in
--clean) clean=1 ;;
"") ;;
*) die "usage: $0 [--clean]" ;;
esac

if [[ -f $STATE_ENV ]]; then
  # shellcheck disable=SC1090
  source "$STATE_ENV"
fi

# The real node first: its kubelet would restart what the rest of this stops.
stop_node

# Reverse start order: terminal-apiserver and kwok first, etcd last, so nothing logs
# a storm of connection errors on its way down.
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
  stop_component "${COMPONENTS[i]}"
done

kill_kwok_leftovers

# Verify: the ports we used are free and no process of ours still listens anywhere
# (that would include whatever port terminal-apiserver's embedded NATS opened).
busy=()
for var in "${PORT_VARS[@]}"; do
  [[ $var != KUBECTL_PROXY_PORT ]] || continue # not ours: make up never listens on it
  port=${!var:-}
  [[ -z $port ]] || ! port_in_use "$port" || busy+=("$var=$port")
done
if command -v ss >/dev/null; then
  while read -r pid; do
    [[ -r /proc/$pid/cmdline ]] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$LOCAL_DIR"; then
      busy+=("pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-80))")
    fi
  done < <(ss -Hltnp | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
fi
left=$(node_leftovers)
while read -r line; do
  [[ -z $line ]] || busy+=("$line")
done <<<"$left"
if ((${#busy[@]})); then
  printf 'error: left behind by local-down: %s\n' "${busy[@]}" >&2
  exit 1
fi

if ((clean)); then
  rm -rf "$LOCAL_DIR"
  log "removed ${LOCAL_DIR#"$ROOT"/}"
fi
log "local control plane is down"
