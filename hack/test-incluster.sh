#!/usr/bin/env bash
# terminal-apiserver installed for real on the local control plane's real node,
# as an operator installs it, and tested through the aggregation layer:
#
#   1. the image (make image) imported into the node's containerd, tagged :local;
#   2. artifacts/deploy/overlays/local applied server-side: the self-signed
#      overlay (certificates from its generate-certs.sh), two server replicas,
#      NATS as a three-server JetStream cluster with TLS, routes by mutual TLS
#      and a password (the Secret nats-auth, made by artifacts/operations/nats-auth.sh);
#   3. go test ./test/incluster: NATS refuses clients without TLS or password
#      and routes as a cluster, and alice opens a session, types, reads and
#      closes it through kube-apiserver, served by the in-cluster replicas.
#
# The APIService is one per cluster: the install takes it over from the
# server make up runs on this machine (whose Service of the same name is an
# ExternalName), so hack/e2e.sh runs this after the other suites. On the way
# out the install is removed and make up's server registered again.
#
# Needs a running local control plane with the real node (hack/e2e.sh, or
# make up first): with LOCAL_NODE=kwok nothing runs images, so it says so and
# does nothing.
#
#   INCLUSTER_ARGS   extra `go test` arguments, e.g. INCLUSTER_ARGS='-v'
#   INCLUSTER_KEEP=1 leave the install running (make up puts the local server back)
#   INCLUSTER_SERVER_ARGS  extra flags for the in-cluster server (a list)
#
# hack/test-incluster.sh COMMAND... runs COMMAND with the install in place
# and the same environment instead of the tests (make bench's sizing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"
[[ -f $STATE_ENV ]] || die "no local control plane: run make up (or hack/e2e.sh) first"
# shellcheck disable=SC1090
source "$STATE_ENV"
# shellcheck source=hack/lib/node.sh
source "$ROOT/hack/lib/node.sh"
cd "$ROOT"

if [[ ${LOCAL_NODE:-real} != real ]]; then
  log "LOCAL_NODE=$LOCAL_NODE: no in-cluster install (kwok runs no images; the real node, the default, does)"
  exit 0
fi

NS=terminal-system
WORK=$LOCAL_DIR/incluster
PV_DIR=$NODE_DIR/pv
TIMEOUT=${TIMEOUT:-180}
k() { "$TOOLS_BIN/kubectl" --context admin "$@"; }

# The install's objects but its namespace, ServiceAccount, RBAC and APIService,
# which make up's server shares (the same identity, the same registration).
install_objects() {
  k create --dry-run=client -o name -f "$WORK/install.yaml" |
    grep -Ev '^(namespace|serviceaccount)/|\.rbac\.authorization\.k8s\.io/|^apiservice\.'
}

uninstall() {
  local objs
  mapfile -t objs < <(install_objects 2>/dev/null || true)
  ((${#objs[@]} == 0)) || k -n "$NS" delete --ignore-not-found --cascade=foreground --wait=true --timeout=120s "${objs[@]}" >/dev/null || true
  k -n "$NS" delete secret --ignore-not-found nats-auth >/dev/null || true
  k -n "$NS" delete pvc --ignore-not-found data-nats-0 data-nats-1 data-nats-2 >/dev/null || true
  k delete pv --ignore-not-found terminal-local-nats-0 terminal-local-nats-1 terminal-local-nats-2 >/dev/null || true
  rm -rf "$PV_DIR"
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)); then
    log "in-cluster test failed (exit $rc); the install's state and logs:"
    k -n "$NS" get pods,pvc -o wide >&2 || true
    k get apiservice v1alpha1.terminal.meshery.io -o go-template='{{range .status.conditions}}{{.type}}={{.status}} {{.reason}}: {{.message}}{{"\n"}}{{end}}' >&2 || true
    local pod
    for pod in $(k -n "$NS" get pods -o name 2>/dev/null); do
      echo "----- $pod -----" >&2
      k -n "$NS" logs "$pod" --all-containers --tail 30 >&2 || true
      # A container that restarted: why its last run ended.
      if k -n "$NS" logs "$pod" --previous --tail 1 >/dev/null 2>&1; then
        echo "----- $pod, the run before its last restart -----" >&2
        k -n "$NS" logs "$pod" --previous --tail 30 >&2 || true
        k -n "$NS" get "$pod" -o go-template='{{range .status.containerStatuses}}{{.name}}: {{.lastState}}{{"\n"}}{{end}}' >&2 || true
      fi
    done
  fi
  if [[ ${INCLUSTER_KEEP:-0} != 1 ]]; then
    log "removing the in-cluster install; make up's server takes the APIService back"
    uninstall
    # Its ExternalName Service and APIService, registered again (the server
    # itself kept running).
    "$ROOT/hack/local-up.sh" >/dev/null || rc=$((rc == 0 ? 1 : rc))
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The image, under the tag the overlay names.
image=${TERMINAL_APISERVER_IMAGE:-}
if [[ -z $image ]]; then
  read -r image image_file < <(hack/build-image.sh)
  node_ctr images import "$image_file" >/dev/null
fi
node_ctr images tag --force "$image" ghcr.io/meshery/terminal-apiserver:local >/dev/null

# 2. The manifests, from a copy: generate-certs.sh writes next to itself.
rm -rf "$WORK"
mkdir -p "$WORK"
cp -r artifacts/deploy "$WORK/deploy"
# The overlay applied: overlays/local, or one over it adding the server flags.
OVERLAY=$WORK/deploy/overlays/local
read -r -a server_args <<<"${INCLUSTER_SERVER_ARGS:-}"
if ((${#server_args[@]} > 0)); then
  OVERLAY=$WORK/deploy/overlays/local-args
  mkdir -p "$OVERLAY"
  q="'" # YAML single quotes: a quote inside is doubled
  {
    printf 'resources: [../local]\npatches:\n'
    for arg in "${server_args[@]}"; do
      printf -- "- target: {kind: Deployment, name: terminal-apiserver}\n  patch: |-\n    - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: '%s'\n" "${arg//$q/$q$q}"
    done
  } >"$OVERLAY/kustomization.yaml"
fi
"$WORK/deploy/overlays/self-signed/generate-certs.sh" >/dev/null
k kustomize "$OVERLAY" >"$WORK/install.yaml"
uninstall # what an interrupted run left

# The Secret an operator creates before applying (artifacts/README.md).
NAMESPACE=$NS KUBECTL="$TOOLS_BIN/kubectl --context admin" "$ROOT/artifacts/operations/nats-auth.sh" create >/dev/null
# NATS's volumes: a directory on the node each, owned by NATS's user (1000),
# bound to one claim each.
for i in 0 1 2; do
  mkdir -p "$PV_DIR/nats-$i"
  chown 1000:1000 "$PV_DIR/nats-$i"
  cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: terminal-local-nats-$i
spec:
  storageClassName: terminal-local
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: $NS, name: data-nats-$i}
  hostPath: {path: $PV_DIR/nats-$i, type: Directory}
---
EOF
done | k apply -f - >/dev/null

# make up's server registered a Service of this name as an ExternalName.
k -n "$NS" delete service terminal-apiserver --ignore-not-found >/dev/null
log "applying artifacts/deploy/overlays/local${server_args[*]:+ with the server flags ${server_args[*]}}"
k apply --server-side --force-conflicts -f "$WORK/install.yaml" >/dev/null
k -n "$NS" rollout status statefulset/nats --timeout "${TIMEOUT}s"
k -n "$NS" rollout status deployment/terminal-apiserver --timeout "${TIMEOUT}s"
log "waiting for APIService v1alpha1.terminal.meshery.io to become Available on the in-cluster Service"
deadline=$((SECONDS + TIMEOUT))
until [[ $(k get apiservice v1alpha1.terminal.meshery.io -o go-template='{{.spec.service.port}} {{range .status.conditions}}{{if eq .type "Available"}}{{.status}}{{end}}{{end}}') == "443 True" ]]; do
  ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for the APIService"
  sleep 0.5
done

# 3. The tests (or the command given).
export INCLUSTER_NAMESPACE=$NS INCLUSTER_DEPLOY_DIR=$WORK/deploy INCLUSTER_OVERLAY=$OVERLAY INCLUSTER_KUBECTL=$TOOLS_BIN/kubectl
if (($# > 0)); then
  "$@"
  exit
fi
log "testing the in-cluster install"
# shellcheck disable=SC2086 # INCLUSTER_ARGS is a list of flags.
go test ./test/incluster/... -count=1 -timeout 10m ${INCLUSTER_ARGS:-}
