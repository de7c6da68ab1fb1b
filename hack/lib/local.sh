#!/usr/bin/env bash
# Shared settings and helpers for hack/local-up.sh, hack/local-down.sh and hack/e2e.sh.
# Sourced, never executed: it only defines variables and functions.
# shellcheck disable=SC2034 # the variables are used by the scripts that source this.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=hack/lib/versions.sh
source "$ROOT/hack/lib/versions.sh"
LOCAL_DIR=${LOCAL_DIR:-$ROOT/_output/local}
PKI_DIR=$LOCAL_DIR/pki
LOG_DIR=$LOCAL_DIR/logs
PID_DIR=$LOCAL_DIR/pids
# Everything local-up picks (ports, paths) is written here, so local-down, e2e and
# a second local-up agree with the first one even when ports were picked at run time.
STATE_ENV=$LOCAL_DIR/env.sh

# The components in start order; local-down stops them in reverse.
# The real node's (hack/lib/node.sh) are stopped by stop_node first, which
# also removes what they leave behind.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok containerd coredns kubelet kube-proxy terminal-apiserver)

# The ports local-up picks (and saves in STATE_ENV); local-down checks they are
# free again. KUBECTL_PROXY_PORT is picked but not listened on by make up.
PORT_VARS=(ETCD_PORT ETCD_PEER_PORT KUBE_APISERVER_PORT KUBE_CONTROLLER_MANAGER_PORT
  KUBE_SCHEDULER_PORT KWOK_PORT TERMINAL_APISERVER_PORT TERMINAL_APISERVER_NATS_PORT
  KUBELET_PORT KUBELET_HEALTHZ_PORT KUBE_PROXY_HEALTHZ_PORT KUBE_PROXY_METRICS_PORT
  COREDNS_READY_PORT KUBECTL_PROXY_PORT)

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# install_debian_packages PKG...: installs the Debian packages not installed yet,
# never removing any (--no-remove: apt must not trade a package of the
# machine's for one of ours).
install_debian_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
}

# port_in_use PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
# Uses bash's /dev/tcp so neither ss nor nc is required.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_of NAME: prints the pid recorded for a component if that process is still alive
# AND is ours. The cmdline check guards against pid reuse after a reboot or a crash:
# every component we start gets at least one argument under $LOCAL_DIR.
pid_of() {
  local f=$PID_DIR/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$LOCAL_DIR" || return 1
  echo "$pid"
}

# log_tail NAME [LINES]: the end of a component's log, for error reports.
log_tail() {
  local f=$LOG_DIR/$1.log n=${2:-40}
  [[ -f $f ]] || return 0
  echo "----- last $n lines of $f -----" >&2
  tail -n "$n" "$f" >&2
  echo "----- end of $1 log -----" >&2
}

# Marker put in kwok's environment. kwok runs `kubectl exec` commands as local
# processes in their own session (setsid) and does not kill them when the stream
# closes, so they outlive kwok; the marker, inherited by every exec'd process and
# its children, is how local-down finds them (/proc/PID/environ).
kwok_marker() { echo "LOCAL_UP_KWOK_EXEC=$LOCAL_DIR"; }

# kwok_exec_pids: processes started through kwok exec (see kwok_marker), excluding kwok itself.
kwok_exec_pids() {
  local kwok_pid f p
  kwok_pid=$(pid_of kwok || true)
  # One grep over every environ (NUL-separated entries, hence -z); unreadable and
  # vanished processes are skipped silently.
  while IFS= read -r f; do
    p=${f#/proc/}
    p=${p%/environ}
    [[ $p == "$kwok_pid" ]] || echo "$p"
  done < <(grep -lzxF "$(kwok_marker)" /proc/[0-9]*/environ 2>/dev/null || true)
}

# kill_kwok_leftovers ends the processes kwok exec started and left running:
# kwok runs exec'd commands in sessions of their own and never kills them (a
# real kubelet's runtime would, with the container).
kill_kwok_leftovers() {
  local leftovers i
  mapfile -t leftovers < <(kwok_exec_pids)
  ((${#leftovers[@]})) || return 0
  log "killing ${#leftovers[@]} process(es) left over from kwok exec"
  kill -TERM "${leftovers[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    mapfile -t leftovers < <(kwok_exec_pids)
    ((${#leftovers[@]})) || return 0
    sleep 0.1
  done
  kill -KILL "${leftovers[@]}" 2>/dev/null || true
}

# stop_component NAME: SIGTERM to the component's process group (each was started in
# a session of its own), SIGKILL if it is still alive after 15 seconds.
stop_component() {
  local name=$1 pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$PID_DIR/$name.pid"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    pid_of "$name" >/dev/null || break
    sleep 0.1
  done
  if pid_of "$name" >/dev/null; then
    log "$name did not stop within 15s: killing it"
  fi
  # Also reaps any member of the group that outlived its leader.
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PID_DIR/$name.pid"
}
