#!/usr/bin/env bash
# Starts a local Kubernetes control plane as plain processes (no Docker here): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler on loopback, and a real node
# (kubelet, kube-proxy, containerd, runc: hack/lib/node.sh) or, with LOCAL_NODE=kwok,
# two kwok nodes instead; seeds demo tenants and workloads; then builds, starts and
# registers terminal-apiserver behind the aggregation layer (when cmd/terminal-apiserver
# exists). Everything it makes lives under _output/local/; hack/local-down.sh stops it.
#
# Idempotent: if the control plane is already up it is kept (manifests are re-applied,
# and terminal-apiserver is rebuilt and restarted only if its binary changed).
#
# Environment (all optional):
#   ETCD_PORT ETCD_PEER_PORT KUBE_APISERVER_PORT KUBE_CONTROLLER_MANAGER_PORT
#   KUBE_SCHEDULER_PORT KWOK_PORT TERMINAL_APISERVER_PORT TERMINAL_APISERVER_NATS_PORT
#   KUBELET_PORT KUBELET_HEALTHZ_PORT KUBE_PROXY_HEALTHZ_PORT KUBE_PROXY_METRICS_PORT
#   COREDNS_READY_PORT KUBECTL_PROXY_PORT (not listened on: the origin allowed for `kubectl proxy --www`)
#       ports on 127.0.0.1; a port given explicitly must be free, a default that is
#       taken is replaced by the next free one. The choice is saved in _output/local/env.sh.
#   SKIP_TERMINAL_APISERVER=1      bring up the cluster only
#   LOCAL_NODE=kwok                two fake kwok nodes instead of the real node (exec runs
#                                  commands as processes of this machine: artifacts/README.md)
#   TERMINAL_APISERVER_EXTRA_ARGS  extra flags for terminal-apiserver (word-split)
#   TERMINAL_APISERVER_RESTART=1   restart terminal-apiserver even if unchanged
#   LOCAL_UP_TIMEOUT               seconds to wait for each component (default 120)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_NODE=${LOCAL_NODE:-real}
[[ $LOCAL_NODE == real || $LOCAL_NODE == kwok ]] || { echo "error: LOCAL_NODE is real or kwok, not '$LOCAL_NODE'" >&2; exit 1; }
# shellcheck source=hack/lib/local.sh
source "$ROOT/hack/lib/local.sh"
# shellcheck source=hack/lib/node.sh
source "$ROOT/hack/lib/node.sh"

TIMEOUT=${LOCAL_UP_TIMEOUT:-120}
KUBECTL=$TOOLS_BIN/kubectl
ADMIN_KUBECONFIG=$LOCAL_DIR/kubeconfig
DEMO_NAMESPACES=(team-a team-b)
# Bump when the certificate layout changes, so old _output/local/pki dirs get remade.
PKI_VERSION=3

for tool in go openssl curl setsid; do
  command -v "$tool" >/dev/null || die "$tool is required (Debian: apt-get install -y openssl curl util-linux)"
done

k() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --context admin "$@"; }

# wait_for SECONDS WHAT COMPONENT CMD...: polls CMD until it succeeds. Gives up, with
# COMPONENT's log tail, at the deadline or as soon as COMPONENT's process has died.
wait_for() {
  local timeout=$1 what=$2 comp=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $comp ]] && ! pid_of "$comp" >/dev/null; then
      log_tail "$comp"
      die "$comp exited while waiting for $what"
    fi
    if ((SECONDS >= deadline)); then
      [[ -z $comp ]] || log_tail "$comp"
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.5
  done
}

# start NAME CMD...: runs CMD detached in a session of its own (so local-down can kill
# its whole process group, and Ctrl-C on the terminal that ran `make up` doesn't), with
# output in _output/local/logs/NAME.log. The wrapper shell writes its own pid and then
# execs CMD, so the pid file is right even when setsid has to fork.
start() {
  local name=$1
  shift
  local pidfile=$PID_DIR/$name.pid logfile=$LOG_DIR/$name.log
  rm -f "$pidfile"
  [[ ! -f $logfile ]] || mv -f "$logfile" "$logfile.prev"
  log "starting $name (log: ${logfile#"$ROOT"/})"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >"$logfile" 2>&1 </dev/null &
  wait_for 10 "$name's pid file" "" test -s "$pidfile"
}

# ----------------------------------------------------------------------------- ports

# pick_port VAR DEFAULT: an explicitly set VAR must be free; otherwise the first free
# port from DEFAULT upwards.
pick_port() {
  local var=$1 def=$2 p
  if [[ -n ${!var:-} ]]; then
    port_in_use "${!var}" && die "$var=${!var} is already in use on 127.0.0.1"
    return 0
  fi
  for ((p = def; p < def + 100; p++)); do
    if ! port_in_use "$p" && [[ " ${PICKED_PORTS[*]:-} " != *" $p "* ]]; then
      [[ $p == "$def" ]] || log "port $def is taken; $var=$p"
      printf -v "$var" '%s' "$p"
      PICKED_PORTS+=("$p")
      return 0
    fi
  done
  die "no free port for $var in $def..$((def + 99))"
}

pick_ports() {
  PICKED_PORTS=()
  pick_port ETCD_PORT 23790
  pick_port ETCD_PEER_PORT 23800
  pick_port KUBE_APISERVER_PORT 16443
  pick_port KUBE_CONTROLLER_MANAGER_PORT 16257
  pick_port KUBE_SCHEDULER_PORT 16259
  pick_port KWOK_PORT 16250
  pick_port TERMINAL_APISERVER_PORT 16643
  pick_port TERMINAL_APISERVER_NATS_PORT 16422
  pick_port KUBELET_PORT 16350
  pick_port KUBELET_HEALTHZ_PORT 16348
  pick_port KUBE_PROXY_HEALTHZ_PORT 16356
  pick_port KUBE_PROXY_METRICS_PORT 16349
  pick_port COREDNS_READY_PORT 16181
  # Not listened on by make up: the port of `kubectl proxy --www` serving the
  # browser console, whose origin terminal-apiserver allows (docs/console.md).
  pick_port KUBECTL_PROXY_PORT 8001
}

write_state() {
  cat >"$STATE_ENV" <<EOF
# Written by hack/local-up.sh: the local control plane's ports and paths.
# Source it (hack/e2e.sh does) to talk to the cluster:  source ${STATE_ENV#"$ROOT"/}
export LOCAL_DIR='$LOCAL_DIR'
export TOOLS_BIN='$TOOLS_BIN'
export LOCAL_LOG_DIR='$LOG_DIR'
export LOCAL_PID_DIR='$PID_DIR'
export LOCAL_PKI_DIR='$PKI_DIR'
export KUBECONFIG='$ADMIN_KUBECONFIG'
export ETCD_PORT=$ETCD_PORT
export ETCD_PEER_PORT=$ETCD_PEER_PORT
export KUBE_APISERVER_PORT=$KUBE_APISERVER_PORT
export KUBE_APISERVER_URL='https://127.0.0.1:$KUBE_APISERVER_PORT'
export KUBE_CONTROLLER_MANAGER_PORT=$KUBE_CONTROLLER_MANAGER_PORT
export KUBE_SCHEDULER_PORT=$KUBE_SCHEDULER_PORT
export KWOK_PORT=$KWOK_PORT
export TERMINAL_APISERVER_PORT=$TERMINAL_APISERVER_PORT
export TERMINAL_APISERVER_URL='https://127.0.0.1:$TERMINAL_APISERVER_PORT'
export TERMINAL_APISERVER_NATS_DATA_DIR='$LOCAL_DIR/nats'
# The embedded NATS server listens here (loopback only) so tests and the nats CLI
# can reach the session subjects.
export TERMINAL_APISERVER_NATS_PORT=$TERMINAL_APISERVER_NATS_PORT
export KUBELET_PORT=$KUBELET_PORT
export KUBELET_HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
export KUBE_PROXY_HEALTHZ_PORT=$KUBE_PROXY_HEALTHZ_PORT
export KUBE_PROXY_METRICS_PORT=$KUBE_PROXY_METRICS_PORT
export COREDNS_READY_PORT=$COREDNS_READY_PORT
export KUBECTL_PROXY_PORT=$KUBECTL_PROXY_PORT
export LOCAL_NODE='$LOCAL_NODE'
export TERMINAL_APISERVER_NATS_URL='nats://127.0.0.1:$TERMINAL_APISERVER_NATS_PORT'
# It requires this user and password of every client (nats --user ... --password "\$(cat FILE)").
export TERMINAL_APISERVER_NATS_USER=terminal-apiserver
export TERMINAL_APISERVER_NATS_PASSWORD_FILE='$PKI_DIR/nats-password'
export TERMINAL_APISERVER_KUBECONFIG='$LOCAL_DIR/terminal-apiserver.kubeconfig'
export TERMINAL_APISERVER_LOG='$LOG_DIR/terminal-apiserver.log'
export KUBE_AUDIT_LOG='$LOG_DIR/kube-apiserver-audit.log'
export TERMINAL_APISERVER_AUDIT_LOG='$LOG_DIR/terminal-apiserver-audit.log'
# kwok exec runs commands as local processes that outlive their stream; each carries
# this NAME=VALUE in its environment. Tests can match /proc/PID/environ against it.
export KWOK_EXEC_MARKER='$(kwok_marker)'
export PATH='$TOOLS_BIN:$ROOT/_output/bin':"\$PATH"
EOF
}

# ------------------------------------------------------------------------------ PKI

# new_key NAME: an ECDSA P-256 key (fast to make, accepted by every component).
new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI_DIR/$1.key" 2>/dev/null
}

# new_ca NAME CN
new_ca() {
  new_key "$1"
  openssl req -x509 -new -key "$PKI_DIR/$1.key" -out "$PKI_DIR/$1.crt" -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

# new_cert CA NAME SUBJECT USAGE [SAN]: USAGE is serverAuth, clientAuth or both.
new_cert() {
  local ca=$1 name=$2 subj=$3 usage=$4 san=${5:-}
  new_key "$name"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$PKI_DIR/$name.ext"
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" -out "$PKI_DIR/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/$ca.crt" -CAkey "$PKI_DIR/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$PKI_DIR/$name.ext" \
    -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$PKI_DIR/$name.ext"
}

# The certificates are kept across up/down cycles (only etcd's data is wiped), so a
# kubeconfig handed out once keeps working.
make_pki() {
  if [[ -f $PKI_DIR/.complete && $(<"$PKI_DIR/.complete") == "$PKI_VERSION" ]]; then
    return 0
  fi
  log "generating certificates in ${PKI_DIR#"$ROOT"/}"
  rm -rf "$PKI_DIR"
  mkdir -p "$PKI_DIR"
  chmod 700 "$PKI_DIR"

  # Cluster CA: kube-apiserver's serving cert and every client certificate.
  new_ca ca local-cluster-ca
  new_cert ca kube-apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
  # kube-apiserver -> kubelet (kwok) client cert, and kwok's serving cert, which
  # kube-apiserver verifies (--kubelet-certificate-authority) at the node's InternalIP.
  new_cert ca kube-apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=kubeadm:cluster-admins" clientAuth
  new_cert ca kwok-serving "/CN=kwok" serverAuth "DNS:localhost,IP:127.0.0.1"
  # Component identities: bootstrap RBAC already binds these user names.
  new_cert ca kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  new_cert ca kube-scheduler "/CN=system:kube-scheduler" clientAuth
  # kwok updates nodes, pods, leases and reads its CRDs across the cluster; it stands in
  # for every kubelet at once, so it gets cluster-admin rather than the Node authorizer.
  new_cert ca kwok "/CN=kwok/O=system:masters" clientAuth
  # People. Groups: admin is cluster-admin (system:masters, and cluster-admins, bound
  # to cluster-admin by demo.yaml: sessions never run as system:masters); alice and
  # bob share "devs".
  new_cert ca admin "/CN=admin/O=system:masters/O=cluster-admins" clientAuth
  new_cert ca alice "/CN=alice/O=devs" clientAuth
  new_cert ca bob "/CN=bob/O=devs" clientAuth
  new_cert ca viewer "/CN=viewer/O=viewers" clientAuth
  # The embedded NATS server's password: NATS access is exec access to every session.
  (umask 077 && openssl rand -hex 32 >"$PKI_DIR/nats-password")
  # terminal-apiserver's identity: the same user name its ServiceAccount has in a real
  # cluster, so artifacts/deploy's RBAC applies unchanged. A certificate rather than a
  # `kubectl create token` token because it does not expire mid-run.
  new_cert ca terminal-apiserver-client \
    "/CN=system:serviceaccount:terminal-system:terminal-apiserver/O=system:serviceaccounts/O=system:serviceaccounts:terminal-system" clientAuth

  # Front proxy: the aggregator's client identity towards aggregated servers, which trust
  # the X-Remote-* headers only from a cert signed by this CA with an allowed name.
  new_ca front-proxy-ca local-front-proxy-ca
  new_cert front-proxy-ca front-proxy-client "/CN=front-proxy-client" clientAuth

  # terminal-apiserver's serving cert, from a CA of its own as in a real cluster: that
  # CA is the APIService's caBundle. The aggregator verifies <service>.<namespace>.svc.
  new_ca serving-ca terminal-apiserver-serving-ca
  new_cert serving-ca terminal-apiserver-serving "/CN=terminal-apiserver.terminal-system.svc" serverAuth \
    "DNS:terminal-apiserver.terminal-system.svc,DNS:terminal-apiserver.terminal-system.svc.cluster.local,DNS:terminal-apiserver.terminal-system,DNS:terminal-apiserver,DNS:localhost,IP:127.0.0.1"

  # ServiceAccount token signing keys.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI_DIR/sa.key" 2>/dev/null
  openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null

  chmod 600 "$PKI_DIR"/*.key
  echo "$PKI_VERSION" >"$PKI_DIR/.complete"
}

# kubeconfig FILE CONTEXT USER-CERT [NAMESPACE]: adds a context (and its user) to FILE.
kubeconfig() {
  local file=$1 ctx=$2 cert=$3 ns=${4:-}
  local kc=("$KUBECTL" --kubeconfig "$file" config)
  "${kc[@]}" set-cluster local --server "https://127.0.0.1:$KUBE_APISERVER_PORT" \
    --certificate-authority "$PKI_DIR/ca.crt" --embed-certs=true >/dev/null
  "${kc[@]}" set-credentials "$ctx" --client-certificate "$PKI_DIR/$cert.crt" \
    --client-key "$PKI_DIR/$cert.key" --embed-certs=true >/dev/null
  "${kc[@]}" set-context "$ctx" --cluster local --user "$ctx" ${ns:+--namespace "$ns"} >/dev/null
}

make_kubeconfigs() {
  local f
  # Rewritten every fresh start: the server URL carries the (possibly re-picked) port.
  for f in "$ADMIN_KUBECONFIG" "$LOCAL_DIR"/*.kubeconfig; do rm -f "$f"; done
  kubeconfig "$ADMIN_KUBECONFIG" alice alice team-a
  kubeconfig "$ADMIN_KUBECONFIG" bob bob team-b
  kubeconfig "$ADMIN_KUBECONFIG" viewer viewer team-a
  kubeconfig "$ADMIN_KUBECONFIG" admin admin
  "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" config use-context admin >/dev/null
  for f in kube-controller-manager kube-scheduler kwok; do
    kubeconfig "$LOCAL_DIR/$f.kubeconfig" "$f" "$f"
    "$KUBECTL" --kubeconfig "$LOCAL_DIR/$f.kubeconfig" config use-context "$f" >/dev/null
  done
  kubeconfig "$LOCAL_DIR/terminal-apiserver.kubeconfig" terminal-apiserver terminal-apiserver-client
  "$KUBECTL" --kubeconfig "$LOCAL_DIR/terminal-apiserver.kubeconfig" config use-context terminal-apiserver >/dev/null
  chmod 600 "$ADMIN_KUBECONFIG" "$LOCAL_DIR"/*.kubeconfig
}

# ------------------------------------------------------------------------ components

healthy_http() { curl -fsS --max-time 2 "$1" 2>/dev/null | grep -q "$2"; }
healthy_https_anon() { curl -fsS --max-time 2 --cacert "$3" "$1" 2>/dev/null | grep -qx "${2:-ok}"; }
apiserver_ready() {
  curl -fsS --max-time 2 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "https://127.0.0.1:$KUBE_APISERVER_PORT/readyz" 2>/dev/null | grep -qx ok
}

start_etcd() {
  start etcd "$TOOLS_BIN/etcd" \
    --name local \
    --data-dir "$LOCAL_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true \
    --log-level warn
  # --unsafe-no-fsync: a throwaway dev cluster; fsync per write makes every
  # kubectl apply and test much slower on this VM's disk.
  wait_for "$TIMEOUT" "etcd health" etcd healthy_http "http://127.0.0.1:$ETCD_PORT/health" '"health":"true"'
}

write_audit_policy() {
  # Metadata for every request that changes something or reaches a pod (exec, attach)
  # or a terminal session, so e2e tests can check who the cluster thinks did it
  # (the bridge impersonates users). Read traffic of the components is left out.
  cat >"$LOCAL_DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi/*", "/api", "/apis", "/apis/*"]
- level: None
  resources:
  - group: coordination.k8s.io
    resources: [leases]
# kube-apiserver's own bootstrapping (default RBAC, flow schemas, APIServices).
- level: None
  users: [system:apiserver]
- level: None
  verbs: [get, list, watch]
  users: [system:kube-scheduler, system:kube-controller-manager, kwok]
- level: None
  verbs: [get, list, watch]
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
EOF
}

start_kube_apiserver() {
  local KWOK_FEATURE_GATES="" address=()
  if [[ $LOCAL_NODE == kwok ]]; then
    KWOK_FEATURE_GATES=ExtendWebSocketsToKubelet=false
    address=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  else
    local ip
    ip=$(node_ip)
    [[ -n $ip ]] || die "no non-loopback IPv4 address: pods reach kube-apiserver there"
    address=(--bind-address 0.0.0.0 --advertise-address "$ip")
    # Reachable from this machine and its pods only, not from its LAN.
    install_node_packages
    guard_node_ports
  fi
  write_audit_policy
  start kube-apiserver "$TOOLS_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    "${address[@]}" \
    --secure-port "$KUBE_APISERVER_PORT" \
    --cert-dir "$LOCAL_DIR/kube-apiserver-certs" \
    --tls-cert-file "$PKI_DIR/kube-apiserver.crt" \
    --tls-private-key-file "$PKI_DIR/kube-apiserver.key" \
    --client-ca-file "$PKI_DIR/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-cluster-ip-range 10.96.0.0/16 \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI_DIR/sa.pub" \
    --service-account-signing-key-file "$PKI_DIR/sa.key" \
    --requestheader-client-ca-file "$PKI_DIR/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --requestheader-uid-headers X-Remote-Uid \
    --proxy-client-cert-file "$PKI_DIR/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI_DIR/front-proxy-client.key" \
    --kubelet-client-certificate "$PKI_DIR/kube-apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI_DIR/kube-apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI_DIR/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    ${KWOK_FEATURE_GATES:+--feature-gates "$KWOK_FEATURE_GATES"} \
    --allow-privileged=true \
    --audit-policy-file "$LOCAL_DIR/audit-policy.yaml" \
    --audit-log-path "$LOG_DIR/kube-apiserver-audit.log" \
    --audit-log-maxsize 100 \
    --audit-log-maxbackup 1
  # Why some of these:
  #   --kubelet-preferred-address-types=InternalIP: kwok node names don't resolve; their
  #     InternalIP is 127.0.0.1 and the kubelet port is kwok's.
  #   Addresses: with kwok, 127.0.0.1 only, and --endpoint-reconciler-type=none (the
  #     kubernetes Service's endpoints would be 127.0.0.1, which the Endpoints API
  #     refuses). With the real node, pods reach kube-apiserver through the
  #     kubernetes Service (10.96.0.1, in its certificate), whose endpoint is the
  #     node's address: it listens on every address, as kubeadm's does, and
  #     still requires a client certificate or token for anything but /version,
  #     /healthz, /livez and /readyz.
  #   ExtendWebSocketsToKubelet=false (LOCAL_NODE=kwok only): kwok refuses the v5
  #     WebSocket handshake, so kube-apiserver must translate WebSocket exec from
  #     clients into SPDY to kwok. A real kubelet speaks it.
  #   No --enable-aggregator-routing: the aggregator then resolves the ExternalName
  #     Service of terminal-apiserver to https://localhost:PORT, which is what we want.
  wait_for "$TIMEOUT" "kube-apiserver /readyz" kube-apiserver apiserver_ready
}

start_controllers() {
  start kube-controller-manager "$TOOLS_BIN/kube-controller-manager" \
    --kubeconfig "$LOCAL_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$LOCAL_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$LOCAL_DIR/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port "$KUBE_CONTROLLER_MANAGER_PORT" \
    --cert-dir "$LOCAL_DIR/kube-controller-manager-certs" \
    --leader-elect=false \
    --controllers '*,clusterrole-aggregation-controller' \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI_DIR/sa.key" \
    --root-ca-file "$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file "$PKI_DIR/ca.crt" \
    --cluster-signing-key-file "$PKI_DIR/ca.key" \
    --cluster-name local
  # --use-service-account-credentials: each controller acts as its own ServiceAccount
  # with its bootstrap role, as in kubeadm clusters (needs the token signing key).
  start kube-scheduler "$TOOLS_BIN/kube-scheduler" \
    --kubeconfig "$LOCAL_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$LOCAL_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$LOCAL_DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port "$KUBE_SCHEDULER_PORT" \
    --leader-elect=false
  # /healthz is reachable anonymously on both (their always-allow paths); their serving
  # certs are self-signed, so -k.
  wait_for "$TIMEOUT" "kube-controller-manager /healthz" kube-controller-manager \
    curl -fsSk --max-time 2 "https://127.0.0.1:$KUBE_CONTROLLER_MANAGER_PORT/healthz"
  wait_for "$TIMEOUT" "kube-scheduler /healthz" kube-scheduler \
    curl -fsSk --max-time 2 "https://127.0.0.1:$KUBE_SCHEDULER_PORT/healthz"
}

start_kwok() {
  local kwok_dir
  kwok_dir=$(<"$TOOLS_BIN/../kwok-dir")
  [[ -d $kwok_dir/kustomize/crd/bases ]] || die "kwok module not found at '$kwok_dir' (rerun hack/build-tools.sh)"
  log "applying kwok CRDs and stages"
  local crd
  for crd in stages execs clusterexecs; do
    k apply --server-side -f "$kwok_dir/kustomize/crd/bases/kwok.x-k8s.io_$crd.yaml" >/dev/null
  done
  k wait --for condition=Established --timeout "${TIMEOUT}s" \
    crd/stages.kwok.x-k8s.io crd/execs.kwok.x-k8s.io crd/clusterexecs.kwok.x-k8s.io >/dev/null
  # fast = node-initialize + node-heartbeat-with-lease + pod ready/complete/delete.
  k apply -k "$kwok_dir/kustomize/stage/fast" >/dev/null

  mkdir -p "$LOCAL_DIR/kwok/home" "$LOCAL_DIR/containers/_default"
  # kwok's exec'd processes inherit kwok's environment, so start it from an empty one:
  # `kubectl exec ... -- env` then shows roughly what a container would (plus the
  # ClusterExec envs), not the environment of whoever ran `make up`. HOME keeps kwok
  # from reading a ~/.kwok/kwok.yaml. The marker lets local-down find leftover
  # exec'd processes.
  start kwok env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$LOCAL_DIR/kwok/home" \
    TERM=xterm \
    "$(kwok_marker)" \
    "$TOOLS_BIN/kwok" \
    --kubeconfig "$LOCAL_DIR/kwok.kubeconfig" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 127.0.0.1 \
    --node-port "$KWOK_PORT" \
    --server-address "127.0.0.1:$KWOK_PORT" \
    --tls-cert-file "$PKI_DIR/kwok-serving.crt" \
    --tls-private-key-file "$PKI_DIR/kwok-serving.key" \
    --enable-crds Stage,Exec,ClusterExec \
    --node-lease-duration-seconds 40 \
    --cidr 10.244.0.1/16
  wait_for "$TIMEOUT" "kwok /healthz" kwok \
    healthy_https_anon "https://127.0.0.1:$KWOK_PORT/healthz" ok "$PKI_DIR/ca.crt"

  local i
  for i in 0 1; do
    k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
# No kwok taint: ordinary Deployments should land here without tolerations.
spec: {}
EOF
  done
  wait_for "$TIMEOUT" "2 Ready kwok nodes" kwok \
    k wait --for condition=Ready --timeout 5s node/kwok-node-0 node/kwok-node-1
}

start_cluster() {
  log "starting the local control plane in ${LOCAL_DIR#"$ROOT"/}"
  # A fresh etcd each time: no stale objects or node leases (a restarted kwok would
  # otherwise wait out the old leases), and the same starting point for every e2e run.
  rm -rf "$LOCAL_DIR/etcd" "$LOCAL_DIR/nats" "$LOCAL_DIR/containers" "$LOCAL_DIR/kwok"
  rm -f "$LOCAL_DIR/terminal-apiserver.state"
  local audit
  for audit in kube-apiserver-audit terminal-apiserver-audit; do
    [[ ! -f $LOG_DIR/$audit.log ]] || mv -f "$LOG_DIR/$audit.log" "$LOG_DIR/$audit.log.prev"
  done
  start_etcd
  start_kube_apiserver
  start_controllers
  if [[ $LOCAL_NODE == kwok ]]; then
    start_kwok
  else
    start_node
  fi
}

# -------------------------------------------------------------------- cluster content

yaml_quote() { # a double-quoted YAML scalar
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# Generates a ClusterExec from the demo workloads so `kubectl exec` on kwok behaves as
# much like the real container as a local process can:
#   - env: the container's env, with configMap/secret references resolved
#     (`kubectl set env --list --resolve`), plus PATH, HOME, KUBERNETES_SERVICE_*;
#   - workDir: a directory holding the files of the container's configMap volumes (the
#     first one mounted); the real mount path does not exist on this machine, so
#     `cat config.yaml` works where `cat /etc/web/config.yaml` can't.
# kwok picks a ClusterExec target by container name only (pod names are generated),
# hence the unique container names in demo.yaml. Any other container gets a plain
# default target, so exec works in pods that tests create.
make_cluster_exec() {
  local out=$LOCAL_DIR/kwok/clusterexec.yaml root=$LOCAL_DIR/containers
  local ns kind name spec c cm items key seen=" "
  mkdir -p "$root/_default" "$LOCAL_DIR/kwok"
  local base_env=(
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "KUBERNETES_SERVICE_HOST=10.96.0.1"
    "KUBERNETES_SERVICE_PORT=443"
    "KUBERNETES_SERVICE_PORT_HTTPS=443"
  )
  emit_env() { # NAME=VALUE lines on stdin -> YAML env list
    local line
    while IFS= read -r line; do
      [[ $line == *=* && $line != \#* ]] || continue
      printf '        - name: %s\n          value: %s\n' "${line%%=*}" "$(yaml_quote "${line#*=}")"
    done
  }
  {
    cat <<EOF
# Generated by hack/local-up.sh from artifacts/examples/demo.yaml; do not edit.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: local-up
spec:
  execs:
EOF
    for ns in "${DEMO_NAMESPACES[@]}"; do
      for kind in deployment pod; do
        # Bare pods only: a Deployment's pods are covered by their Deployment.
        while read -r name; do
          [[ -n $name ]] || continue
          if [[ $kind == deployment ]]; then spec=.spec.template.spec; else spec=.spec; fi
          for c in $(k -n "$ns" get "$kind/$name" -o go-template="{{range $spec.containers}}{{.name}} {{end}}"); do
            [[ $seen != *" $c "* ]] || die "container name '$c' is used twice in the demo workloads; kwok exec targets are per container name"
            seen+="$c "
            # Emptied, not removed: an exec'd shell may be sitting in it.
            mkdir -p "$root/$ns/$c"
            find "$root/$ns/$c" -mindepth 1 -delete
            # configMap volumes mounted in this container, one line each:
            # "configMapName [key=path ...]" (the volume's items; none means every key).
            while read -r cm items; do
              [[ -n $cm ]] || continue
              if [[ -z $items ]]; then
                # shellcheck disable=SC2016 # $k and $v are template variables.
                items=$(k -n "$ns" get "cm/$cm" -o go-template='{{range $k, $v := .data}}{{$k}}={{$k}} {{end}}')
              fi
              for key in $items; do
                mkdir -p "$(dirname "$root/$ns/$c/${key#*=}")"
                k -n "$ns" get "cm/$cm" -o go-template="{{index .data \"${key%%=*}\"}}" >"$root/$ns/$c/${key#*=}"
              done
            done < <(k -n "$ns" get "$kind/$name" -o go-template="{{range \$c := $spec.containers}}{{if eq \$c.name \"$c\"}}{{range \$m := \$c.volumeMounts}}{{range \$v := \$.${spec#.}.volumes}}{{if and (eq \$v.name \$m.name) \$v.configMap}}{{\$v.configMap.name}}{{range \$v.configMap.items}} {{.key}}={{.path}}{{end}}{{\"\\n\"}}{{end}}{{end}}{{end}}{{end}}{{end}}")
            printf '  - containers: [%s]\n    local:\n      workDir: %s\n      envs:\n' "$c" "$(yaml_quote "$root/$ns/$c")"
            {
              printf '%s\n' "${base_env[@]}" "HOME=$root/$ns/$c"
              k -n "$ns" set env "$kind/$name" -c "$c" --list --resolve
            } | emit_env
          done
        done < <(if [[ $kind == deployment ]]; then
          k -n "$ns" get deployments -o go-template='{{range .items}}{{.metadata.name}}{{"\n"}}{{end}}'
        else
          k -n "$ns" get pods -o go-template='{{range .items}}{{if not .metadata.ownerReferences}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}'
        fi)
      done
    done
    # The default target: no `containers`, so it matches every other container.
    printf '  - local:\n      workDir: %s\n      envs:\n' "$(yaml_quote "$root/_default")"
    printf '%s\n' "${base_env[@]}" "HOME=$root/_default" | emit_env
  } >"$out"
  k apply -f "$out" >/dev/null
}

seed_cluster() {
  log "applying namespaces, RBAC and demo workloads"
  # terminal-apiserver's namespace, identity and RBAC: the same files as a real cluster.
  local f
  for f in 00-namespace 01-serviceaccount 02-rbac-delegation 03-rbac-server 04-rbac-user-roles; do
    k apply -f "$ROOT/artifacts/deploy/base/$f.yaml" >/dev/null
  done
  # ServiceAccount admission refuses pods until the namespace's `default` ServiceAccount
  # exists; the controller-manager makes it shortly after the namespace.
  k apply -f - >/dev/null <<EOF
$(for ns in "${DEMO_NAMESPACES[@]}"; do printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n' "$ns"; done)
EOF
  for ns in "${DEMO_NAMESPACES[@]}"; do
    wait_for "$TIMEOUT" "ServiceAccount $ns/default" kube-controller-manager k -n "$ns" get serviceaccount default
  done
  k apply -f "$ROOT/artifacts/examples/demo.yaml" >/dev/null
  [[ $LOCAL_NODE != kwok ]] || make_cluster_exec
  local d
  for ns in "${DEMO_NAMESPACES[@]}"; do
    for d in $(k -n "$ns" get deployments -o name); do
      wait_for "$TIMEOUT" "$ns/$d rollout" kube-scheduler k -n "$ns" rollout status "$d" --timeout 5s
    done
  done
  local node=kubelet
  [[ $LOCAL_NODE != kwok ]] || node=kwok
  wait_for "$TIMEOUT" "team-a/shell-demo Ready" "$node" k -n team-a wait --for condition=Ready --timeout 5s pod/shell-demo
  # The controller-manager aggregates terminal-sessions-edit into edit asynchronously;
  # wait so that RBAC checks right after `make up` see it.
  wait_for "$TIMEOUT" "terminal-sessions-edit aggregated into edit" kube-controller-manager \
    bash -c "'$KUBECTL' --kubeconfig '$ADMIN_KUBECONFIG' --context admin get clusterrole edit -o go-template='{{range .rules}}{{range .resources}}{{.}} {{end}}{{end}}' | grep -qw terminalsessions"
}

# ------------------------------------------------------------------ terminal-apiserver

terminal_apiserver_exists() {
  compgen -G "$ROOT/cmd/terminal-apiserver/*.go" >/dev/null
}

register_terminal_apiserver() {
  local ca_bundle
  ca_bundle=$(base64 -w0 <"$PKI_DIR/serving-ca.crt")
  # Differs from artifacts/deploy only here: the server runs on this machine, so the
  # Service is an ExternalName to localhost (the aggregator dials https://localhost:PORT;
  # Endpoints refuse loopback addresses) and the caBundle is our serving CA.
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: terminal-apiserver
  namespace: terminal-system
  labels:
    app.kubernetes.io/name: terminal-apiserver
spec:
  type: ExternalName
  externalName: localhost
  ports:
  - name: https
    port: $TERMINAL_APISERVER_PORT
    protocol: TCP
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.terminal.meshery.io
  labels:
    app.kubernetes.io/name: terminal-apiserver
spec:
  group: terminal.meshery.io
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: false
  caBundle: $ca_bundle
  service:
    name: terminal-apiserver
    namespace: terminal-system
    port: $TERMINAL_APISERVER_PORT
EOF
}

apiservice_available() {
  [[ $(k get apiservice v1alpha1.terminal.meshery.io \
    -o go-template='{{range .status.conditions}}{{if eq .type "Available"}}{{.status}}{{end}}{{end}}') == True ]] &&
    k get --raw /apis/terminal.meshery.io/v1alpha1 >/dev/null
}

up_terminal_apiserver() {
  if [[ ${SKIP_TERMINAL_APISERVER:-} == 1 ]]; then
    log "SKIP_TERMINAL_APISERVER=1: not starting terminal-apiserver"
    return 0
  fi
  if ! terminal_apiserver_exists; then
    log "NOTE: cmd/terminal-apiserver does not exist yet: the cluster is up without it"
    # A stale registration would make every kubectl discovery call warn about it.
    k delete apiservice v1alpha1.terminal.meshery.io --ignore-not-found >/dev/null
    return 0
  fi
  # A cluster started by an older local-up has no NATS port yet.
  [[ -n ${TERMINAL_APISERVER_NATS_PORT:-} ]] || pick_port TERMINAL_APISERVER_NATS_PORT 16422
  log "building terminal-apiserver"
  mkdir -p "$ROOT/_output/bin"
  local ldflags
  ldflags=$("$ROOT/hack/version.sh")
  (cd "$ROOT" && go build -ldflags "$ldflags" -o _output/bin/terminal-apiserver ./cmd/terminal-apiserver)
  # The kubectl plugin, on the PATH that up prints.
  if [[ -d $ROOT/cmd/kubectl-terminal ]]; then
    (cd "$ROOT" && go build -ldflags "$ldflags" -o _output/bin/kubectl-terminal ./cmd/kubectl-terminal)
  fi

  local bin=$ROOT/_output/bin/terminal-apiserver
  # shellcheck disable=SC2206 # word splitting of the extra flags is the point.
  local args=(
    --secure-port="$TERMINAL_APISERVER_PORT"
    --bind-address=127.0.0.1
    --tls-cert-file="$PKI_DIR/terminal-apiserver-serving.crt"
    --tls-private-key-file="$PKI_DIR/terminal-apiserver-serving.key"
    --kubeconfig="$LOCAL_DIR/terminal-apiserver.kubeconfig"
    --authentication-kubeconfig="$LOCAL_DIR/terminal-apiserver.kubeconfig"
    --authorization-kubeconfig="$LOCAL_DIR/terminal-apiserver.kubeconfig"
    --nats-data-dir="$LOCAL_DIR/nats"
    --nats-listen-address="127.0.0.1:$TERMINAL_APISERVER_NATS_PORT"
    --nats-password-file="$PKI_DIR/nats-password"
    # The e2e suite opens ~80 sessions at once for two users (isolation test).
    --max-sessions-per-user=500
    # The browser console behind `kubectl proxy --www` on this port attaches
    # from this origin (docs/console.md says what that mode gives up).
    --allowed-origins="http://127.0.0.1:$KUBECTL_PROXY_PORT,http://localhost:$KUBECTL_PROXY_PORT"
    # JSON Web Tokens (ServiceAccount tokens people cat, bearer tokens they
    # paste) never reach a transcript; e2e checks it (docs/transcripts.md).
    '--transcript-redact=eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+'
    # Audit and logs as a real cluster's deployment has them (artifacts/deploy),
    # to a file that e2e reads beside kube-apiserver's (docs/audit.md).
    --audit-policy-file="$ROOT/artifacts/deploy/base/audit-policy.yaml"
    --audit-log-path="$LOG_DIR/terminal-apiserver-audit.log"
    --audit-log-maxsize=100
    --audit-log-maxbackup=1
    --logging-format=json
    ${TERMINAL_APISERVER_EXTRA_ARGS:-}
  )
  # Restart only when the binary, its audit policy or its flags changed: sessions in NATS survive a
  # restart anyway, but an unchanged server need not drop its viewers.
  local state
  state="$(sha256sum "$bin" "$ROOT/artifacts/deploy/base/audit-policy.yaml" | cut -d' ' -f1 | tr '\n' ' ') ${args[*]}"
  if [[ ${TERMINAL_APISERVER_RESTART:-} != 1 ]] && pid_of terminal-apiserver >/dev/null && [[ -f $LOCAL_DIR/terminal-apiserver.state &&
    $(<"$LOCAL_DIR/terminal-apiserver.state") == "$state" ]]; then
    log "terminal-apiserver already running with this binary"
  else
    stop_component terminal-apiserver
    mkdir -p "$LOCAL_DIR/nats"
    start terminal-apiserver "$bin" "${args[@]}"
    echo "$state" >"$LOCAL_DIR/terminal-apiserver.state"
  fi
  register_terminal_apiserver
  log "waiting for APIService v1alpha1.terminal.meshery.io to become Available"
  local deadline=$((SECONDS + TIMEOUT))
  until apiservice_available >/dev/null 2>&1; do
    if ! pid_of terminal-apiserver >/dev/null || ((SECONDS >= deadline)); then
      log_tail terminal-apiserver 60
      k get apiservice v1alpha1.terminal.meshery.io -o go-template='{{range .status.conditions}}{{.type}}={{.status}} {{.reason}}: {{.message}}{{"\n"}}{{end}}' >&2 || true
      pid_of terminal-apiserver >/dev/null || die "terminal-apiserver exited"
      die "timed out after ${TIMEOUT}s waiting for the APIService to become Available"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------- main

cluster_up() {
  local c
  [[ -f $STATE_ENV ]] || return 1
  local node=(containerd coredns kubelet kube-proxy)
  [[ $LOCAL_NODE != kwok ]] || node=(kwok)
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler "${node[@]}"; do
    pid_of "$c" >/dev/null || return 1
  done
  apiserver_ready
}

any_running() {
  local c
  for c in "${COMPONENTS[@]}"; do
    pid_of "$c" >/dev/null && return 0
  done
  return 1
}

main() {
  local started=$SECONDS
  "$ROOT/hack/build-tools.sh" >/dev/null
  mkdir -p "$LOG_DIR" "$PID_DIR"

  # The saved ports win over defaults, so a second `make up` finds the running cluster;
  # the node kind asked for now wins over the saved one (and a change restarts it all).
  local want_node=$LOCAL_NODE
  if [[ -f $STATE_ENV ]]; then
    # shellcheck disable=SC1090
    source "$STATE_ENV"
  fi
  : "${KUBECTL_PROXY_PORT:=8001}" # a state file written before it was saved
  local same_node=1
  [[ ${LOCAL_NODE:-} == "$want_node" ]] || same_node=0
  LOCAL_NODE=$want_node
  if ((same_node)) && cluster_up; then
    log "local control plane already up (KUBE_APISERVER_PORT=$KUBE_APISERVER_PORT)"
  else
    if any_running; then
      log "found a partly running control plane: stopping it first"
      "$ROOT/hack/local-down.sh"
    fi
    unset "${PORT_VARS[@]}"
    # Ports given by the caller (saved before sourcing the state file) still apply.
    local v
    for v in "${!USER_PORT_@}"; do printf -v "${v#USER_PORT_}" '%s' "${!v}"; done
    pick_ports
    make_pki
    make_kubeconfigs
    write_state
    start_cluster
  fi
  seed_cluster
  up_terminal_apiserver

  log "up in $((SECONDS - started))s"
  cat <<EOF

Local control plane is up (kube-apiserver https://127.0.0.1:$KUBE_APISERVER_PORT).
Use it with:

export KUBECONFIG=$ADMIN_KUBECONFIG
export PATH=$TOOLS_BIN:$ROOT/_output/bin:\$PATH

Contexts (client certificates):
  admin   (current) cluster-admin: user admin, groups system:masters, cluster-admins
  alice   edit in team-a (namespace team-a): user alice, group devs
  bob     edit in team-b (namespace team-b): user bob, group devs
  viewer  view in team-a (namespace team-a): user viewer, group viewers
Try: kubectl --context alice -n team-a exec deploy/web -- env
     kubectl --context alice -n team-a terminal ui --open    # the browser console
Ports, paths and logs: ${STATE_ENV#"$ROOT"/}, ${LOG_DIR#"$ROOT"/}/. Stop it all with: make down
EOF
}

# Remember ports the caller set explicitly, before the state file's values shadow them.
for _v in "${PORT_VARS[@]}"; do
  if [[ -n ${!_v:-} ]]; then printf -v "USER_PORT_$_v" '%s' "${!_v}"; fi
done
unset _v

main "$@"
