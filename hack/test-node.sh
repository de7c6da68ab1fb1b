#!/usr/bin/env bash
# The local node's images built twice (they must not differ), then the node up
# and down twice: each time the node becomes Ready, a pod of each local image
# runs on it (the static image too), an exec in it sees the container (its own
# environment and processes, a terminal, exit codes from the runtime), a
# Service answers through kube-proxy, and `make down` leaves nothing behind: no
# process, mount, cgroup, network bridge, shim socket, CNI state or iptables
# rule (hack/local-down.sh fails if node_leftovers finds any; this checks the
# runtime's folders too).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source hack/lib/local.sh
source hack/lib/node.sh

fail() {
  echo "test-node: $*" >&2
  for c in containerd kubelet; do log_tail "$c" 30; done
  hack/local-down.sh >/dev/null 2>&1 || true
  exit 1
}

check_pods() {
  # shellcheck disable=SC1091
  source "$STATE_ENV"
  local k=("$TOOLS_BIN/kubectl" --context admin -n team-a)
  "${k[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: node-bash}
spec:
  nodeName: $NODE_NAME
  containers:
  - {name: shell, image: terminal.local/bash:1, imagePullPolicy: Never, command: [sleep, "3600"],
     env: [{name: FROM_SPEC, value: "yes"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: node-busybox}
spec:
  nodeName: $NODE_NAME
  containers:
  - {name: shell, image: terminal.local/busybox:1, imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: node-static}
spec:
  nodeName: $NODE_NAME
  containers:
  - {name: app, image: terminal.local/static:1, imagePullPolicy: Never}
EOF
  "${k[@]}" wait --for condition=Ready --timeout 60s pod/node-bash pod/node-busybox pod/node-static >/dev/null ||
    fail "the pods on $NODE_NAME did not become Ready"
  local out code
  out=$("${k[@]}" exec node-bash -- env)
  [[ $out == *FROM_SPEC=yes* && $out != *LOCAL_DIR* && $out != *KUBECONFIG* ]] ||
    fail "env in the container is not the container's: $out"
  out=$("${k[@]}" exec node-busybox -- ps)
  [[ $(grep -c . <<<"$out") -le 3 && $out == *"sleep 3600"* ]] || fail "ps in the container shows more than its processes: $out"
  # kubectl allocates a terminal only when its own input is one: script gives it one.
  out=$(script -qec "${k[*]} exec -it node-bash -- tty" /dev/null </dev/null) || true
  [[ $out == *"/dev/pts/"* ]] || fail "exec -it has no terminal: $out"
  code=0
  "${k[@]}" exec node-busybox -- sh -c 'exit 3' || code=$?
  ((code == 3)) || fail "exit 3 in the container gave $code"
  if "${k[@]}" exec node-static -- sh -c true 2>/dev/null; then
    fail "the static image has a shell"
  fi
  # The demo web Deployment behind its Service, through kube-proxy's rules.
  local ip
  ip=$("${k[@]}" get service web -o jsonpath='{.spec.clusterIP}')
  "${k[@]}" rollout status deployment/web --timeout 60s >/dev/null || fail "deployment web did not roll out"
  out=$("${k[@]}" exec node-busybox -- timeout 5 wget -qO- "http://$ip/config.yaml") || true
  [[ $out == *"hello from team-a/web"* ]] || fail "the web Service at $ip did not answer: $out"
}

# The images are reproducible: two builds from scratch are byte for byte the same.
repro=$(mktemp -d)
trap 'rm -rf "$repro"' EXIT
NODE_IMAGES_DIR=$repro/a hack/build-images.sh >/dev/null 2>&1
NODE_IMAGES_DIR=$repro/b hack/build-images.sh >/dev/null 2>&1
for tar in "$repro"/a/*.tar; do
  cmp -s "$tar" "$repro/b/${tar##*/}" || fail "two builds of ${tar##*/} differ"
done
echo ">> the node's images build reproducibly" >&2

for round in 1 2; do
  echo ">> round $round: up" >&2
  LOCAL_NODE=real SKIP_TERMINAL_APISERVER=1 hack/local-up.sh >/dev/null || fail "local-up failed"
  check_pods
  echo ">> round $round: down" >&2
  hack/local-down.sh >/dev/null || fail "local-down failed (or left something behind)"
  left=$(node_leftovers)
  [[ -z $left ]] || fail "left behind: $left"
  for d in /run/containerd /var/lib/cni /var/lib/kubelet; do
    [[ ! -e $d ]] || [[ -z $(find "$d" -mindepth 1 -print -quit) ]] || fail "$d is not empty: $(find "$d" | head)"
  done
  [[ -z $(ls -d /sys/fs/cgroup/*/kubepods* 2>/dev/null) ]] || fail "kubepods cgroups left"
done
echo ">> test-node: the real node came up and went down cleanly twice" >&2
