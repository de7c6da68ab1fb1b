# shellcheck shell=bash
# A real node beside the local control plane: Debian's containerd and runc, the
# CNI bridge plugin, and a kubelet built in the tools module, all with their
# state under _output/local/node. Sourced by hack/local-up.sh (start_node, which
# uses its start/wait_for/k/new_cert helpers) and hack/local-down.sh
# (stop_node). What the runtime puts outside that folder (cgroups, the CNI
# bridge and network namespaces' veths, shim sockets in /run/containerd/s,
# /var/log/containers links) is removed by stop_node, which local-down then
# checks with node_leftovers.
#
# Facts this rests on (docs/operations.md, "The local real node"): this kernel
# has cgroup v1, which the kubelet refuses unless failCgroupV1 is false; root
# here lacks CAP_SYS_RESOURCE, so containerd must not ask runc to raise
# oom_score_adj (restrict_oom_score_adj); crun fails on this cgroup layout,
# runc works.
# shellcheck disable=SC2034 # the variables are used by the scripts that source this.

NODE_DIR=$LOCAL_DIR/node
NODE_NAME=local-node
NODE_SOCK=$NODE_DIR/containerd/containerd.sock
# The pod network: a bridge of our own, addresses kept in our folder.
NODE_BRIDGE=tlnode0
NODE_POD_CIDR=10.89.0.0/16
NODE_PACKAGES=(containerd runc containernetworking-plugins busybox-static iproute2 iptables procps)

# node_ip: the machine's own non-loopback address, where kube-apiserver reaches
# the kubelet.
node_ip() {
  ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

node_ctr() { ctr --address "$NODE_SOCK" --namespace k8s.io "$@"; }

write_containerd_config() {
  mkdir -p "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,cni/cache,runc,pod-logs}
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
# Written by hack/lib/node.sh.
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_DIR/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "terminal.local/pause:1"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  cat >"$NODE_DIR/cni/net.d/10-local.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "terminal-local",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$NODE_POD_CIDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
EOF
}

start_containerd() {
  write_containerd_config
  start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for "$TIMEOUT" "containerd's socket" containerd node_ctr version
  local images tar
  images=$("$ROOT/hack/build-images.sh")
  for tar in "$images"/*.tar; do
    node_ctr images import "$tar" >/dev/null
  done
}

# start_coredns: the cluster DNS, as kubeadm's CoreDNS serves it (the
# kubernetes plugin, zone cluster.local), run as a process on the node like
# kube-proxy and listening on the node's address, which the kubelet gives pods
# as their nameserver. Nothing outside cluster.local is answered: this machine
# is offline. The in-cluster install (hack/test-incluster.sh) needs it: NATS
# servers route to each other by their StatefulSet names, and the server finds
# NATS by its Service's.
start_coredns() {
  local ip=$1
  ensure_coredns
  new_cert ca coredns "/CN=system:coredns" clientAuth
  kubeconfig "$LOCAL_DIR/coredns.kubeconfig" coredns coredns
  chmod 600 "$PKI_DIR/coredns.key" "$LOCAL_DIR/coredns.kubeconfig"
  # What kubeadm grants CoreDNS.
  k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}
EOF
  cat >"$NODE_DIR/Corefile" <<EOF
# Written by hack/lib/node.sh.
.:53 {
    bind $ip
    errors
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $LOCAL_DIR/coredns.kubeconfig coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
EOF
  start coredns "$COREDNS_BIN" -conf "$NODE_DIR/Corefile"
  wait_for "$TIMEOUT" "CoreDNS ready" coredns \
    curl -fsS --max-time 2 "http://127.0.0.1:$COREDNS_READY_PORT/ready"
}

write_kubelet_config() {
  local ip=$1
  mkdir -p "$NODE_DIR/kubelet"
  cat >"$NODE_DIR/kubelet-config.yaml" <<EOF
# Written by hack/lib/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's kernel runs cgroup v1 (hybrid); the kubelet refuses it otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$NODE_SOCK
imageServiceEndpoint: unix://$NODE_SOCK
address: $ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
podLogsDir: $NODE_DIR/pod-logs
# A developer's disk is not this node's to police: no eviction, no image GC.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
# CoreDNS (start_coredns) on the node's address.
clusterDNS: [$ip]
clusterDomain: cluster.local
EOF
}

start_kubelet() {
  local ip
  ip=$(node_ip)
  [[ -n $ip ]] || die "no non-loopback IPv4 address: the kubelet must be reachable by kube-apiserver"
  # Remade every start: the node's address may have changed.
  new_cert ca kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$ip"
  new_cert ca kubelet "/CN=system:node:$NODE_NAME/O=system:nodes" clientAuth
  kubeconfig "$LOCAL_DIR/kubelet.kubeconfig" kubelet kubelet
  "$KUBECTL" --kubeconfig "$LOCAL_DIR/kubelet.kubeconfig" config use-context kubelet >/dev/null
  chmod 600 "$PKI_DIR"/kubelet*.key "$LOCAL_DIR/kubelet.kubeconfig"
  # kube-apiserver's client certificate may use the kubelet API (exec, logs).
  k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: local-kube-apiserver-kubelet-api
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}
EOF
  write_kubelet_config "$ip"
  touch "$NODE_DIR/kubelet.cgroups" # ours to remove (see stop_node)
  start kubelet "$TOOLS_BIN/kubelet" \
    --config "$NODE_DIR/kubelet-config.yaml" \
    --kubeconfig "$LOCAL_DIR/kubelet.kubeconfig" \
    --root-dir "$NODE_DIR/kubelet" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$ip" \
    --node-labels "type=real"
  wait_for "$TIMEOUT" "node $NODE_NAME Ready" kubelet \
    k wait --for condition=Ready --timeout 5s "node/$NODE_NAME"
}

# install_node_packages installs the Debian packages the node needs, if missing.
install_node_packages() {
  # Docker's containerd.io provides containerd and runc: installing Debian's
  # would make apt remove it, and Docker with it. Never.
  if dpkg-query -W -f '${Status}' containerd.io 2>/dev/null | grep -q "ok installed"; then
    local p
    for p in "${NODE_PACKAGES[@]}"; do
      dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        die "containerd.io (Docker's) is installed: the local node needs Debian's containerd and runc, which would replace it; use LOCAL_NODE=kwok here"
    done
  fi
  install_debian_packages "${NODE_PACKAGES[@]}"
}

# start_kube_proxy makes Services work on the node: iptables rules from
# Services and EndpointSlices, as in most clusters. It sets no conntrack
# sysctls (this machine's are not ours to change).
start_kube_proxy() {
  new_cert ca kube-proxy "/CN=system:kube-proxy" clientAuth
  kubeconfig "$LOCAL_DIR/kube-proxy.kubeconfig" kube-proxy kube-proxy
  "$KUBECTL" --kubeconfig "$LOCAL_DIR/kube-proxy.kubeconfig" config use-context kube-proxy >/dev/null
  chmod 600 "$PKI_DIR/kube-proxy.key" "$LOCAL_DIR/kube-proxy.kubeconfig"
  cat >"$NODE_DIR/kube-proxy-config.yaml" <<EOF
# Written by hack/lib/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $LOCAL_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# NodePorts on 127.0.0.1 would need route_localnet, a host setting.
iptables: {localhostNodePorts: false}
EOF
  touch "$NODE_DIR/kube-proxy.rules" # ours to remove (see stop_node)
  start kube-proxy "$TOOLS_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy-config.yaml"
  wait_for "$TIMEOUT" "kube-proxy /healthz" kube-proxy \
    curl -fsS --max-time 2 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
}

# guard_node_ports: kube-apiserver (bound to every address: pods reach it at
# the node's), the kubelet and CoreDNS listen on the machine's own address,
# which is on its LAN; drop what reaches their ports from anywhere else than
# this machine and its pods. A chain of our own in the filter table's INPUT,
# made again at every start, removed by stop_node.
NODE_GUARD_CHAIN=TLNODE-GUARD
guard_node_ports() {
  local ip
  ip=$(node_ip)
  iptables -N "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -F "$NODE_GUARD_CHAIN"
  iptables -A "$NODE_GUARD_CHAIN" -s 127.0.0.0/8 -j RETURN
  iptables -A "$NODE_GUARD_CHAIN" -s "$ip/32" -j RETURN
  iptables -A "$NODE_GUARD_CHAIN" -s "$NODE_POD_CIDR" -j RETURN
  iptables -A "$NODE_GUARD_CHAIN" -p tcp -m multiport --dports "$KUBE_APISERVER_PORT,$KUBELET_PORT,53" -j DROP
  iptables -A "$NODE_GUARD_CHAIN" -p udp --dport 53 -j DROP
  iptables -C INPUT -j "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -I INPUT -j "$NODE_GUARD_CHAIN"
}

unguard_node_ports() {
  while iptables -D INPUT -j "$NODE_GUARD_CHAIN" 2>/dev/null; do :; done
  iptables -F "$NODE_GUARD_CHAIN" 2>/dev/null || true
  iptables -X "$NODE_GUARD_CHAIN" 2>/dev/null || true
}

# The host settings the kubelet, kube-proxy and the CNI bridge change; saved
# at the first start, restored by stop_node.
NODE_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# refuse_other_node: the node shares the kubepods cgroups and the KUBE-*
# iptables chains with any other kubelet or kube-proxy on the machine, and
# make down removes them: refuse to start beside one.
refuse_other_node() {
  if [[ ! -f $NODE_DIR/kubelet.cgroups ]] && compgen -G '/sys/fs/cgroup/*/kubepods*' >/dev/null; then
    die "another kubelet's cgroups (/sys/fs/cgroup/*/kubepods*) are on this machine: the local node would share them; use LOCAL_NODE=kwok here"
  fi
  if [[ ! -f $NODE_DIR/kube-proxy.rules ]] && iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
    die "another kube-proxy's iptables rules (KUBE-SERVICES) are on this machine; use LOCAL_NODE=kwok here"
  fi
}

start_node() {
  install_node_packages
  mkdir -p "$NODE_DIR"
  refuse_other_node
  if [[ ! -f $NODE_DIR/sysctl.saved ]]; then
    sysctl -e "${NODE_SYSCTLS[@]}" 2>/dev/null | sed 's/ = /=/' >"$NODE_DIR/sysctl.saved.tmp" || true
    mv "$NODE_DIR/sysctl.saved.tmp" "$NODE_DIR/sysctl.saved"
  fi
  start_containerd
  start_coredns "$(node_ip)"
  start_kubelet
  start_kube_proxy
}

# stop_node: kube-proxy and its rules, the kubelet (so it restarts nothing),
# then every container and shim, containerd, and what they left outside our
# folder.
stop_node() {
  stop_component kube-proxy
  # Its rules in the host's iptables, which outlive it; only when it was
  # ours that made them (a marker file), never another cluster's.
  if [[ -f $NODE_DIR/kube-proxy.rules ]]; then
    "$TOOLS_BIN/kube-proxy" --cleanup --proxy-mode iptables >/dev/null 2>&1 || true
    iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1 || rm -f "$NODE_DIR/kube-proxy.rules"
  fi
  stop_component kubelet
  stop_component coredns
  unguard_node_ports
  local runc_root=$NODE_DIR/runc/k8s.io id shim_pids=() socks=() pid
  if [[ -d $runc_root ]]; then
    for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
      runc --root "$runc_root" kill "$id" KILL 2>/dev/null || true
    done
  fi
  # The shims serve containerd on sockets in /run/containerd/s; note which are ours.
  mapfile -t shim_pids < <(pgrep -f "containerd-shim.*-address $NODE_SOCK" || true)
  if ((${#shim_pids[@]})) && command -v ss >/dev/null; then
    for pid in "${shim_pids[@]}"; do
      mapfile -t -O "${#socks[@]}" socks < <(ss -Hxlp 2>/dev/null | grep "pid=$pid," | grep -o '/run/containerd/s/[0-9a-f]*' | sort -u)
    done
  fi
  if [[ -d $runc_root ]]; then
    for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
      runc --root "$runc_root" delete --force "$id" 2>/dev/null || true
    done
  fi
  ((${#shim_pids[@]} == 0)) || kill -KILL "${shim_pids[@]}" 2>/dev/null || true
  rm -f "${socks[@]}"
  stop_component containerd
  # Mounts under our folder (rootfs, network namespaces, volumes), deepest first.
  local m
  for m in $(awk -v d="$NODE_DIR" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  # The kubelet's cgroups (cgroupfs driver), leaves first, when it was ours
  # that made them.
  local c
  if [[ -f $NODE_DIR/kubelet.cgroups ]]; then
    for c in $(find /sys/fs/cgroup/*/kubepods* -depth -type d 2>/dev/null); do
      rmdir "$c" 2>/dev/null || true
    done
    remove_kubelet_chains
    if ! compgen -G '/sys/fs/cgroup/*/kubepods*' >/dev/null && [[ -z $(kubelet_chains) ]]; then
      rm -f "$NODE_DIR/kubelet.cgroups"
    fi
  fi
  if [[ -f $NODE_DIR/sysctl.saved ]]; then
    sysctl -q -p "$NODE_DIR/sysctl.saved" >/dev/null 2>&1 || true
    rm -f "$NODE_DIR/sysctl.saved"
  fi
  find /var/log/containers -maxdepth 1 -lname "$NODE_DIR/*" -delete 2>/dev/null || true
  # libcni's cache of each sandbox's results, which name its network namespace.
  grep -lsF "$NODE_DIR/" /var/lib/cni/results/* | xargs -r rm -f || true
  # The kubelet's device-plugin socket has a fixed path; ours once nobody listens on it.
  local dp=/var/lib/kubelet/device-plugins/kubelet.sock
  if [[ -S $dp ]] && ! ss -Hxl 2>/dev/null | grep -qF "$dp"; then
    rm -f "$dp"
  fi
  # Folders the runtime made where it keeps these; removed only when empty,
  # so a machine's own containerd or kubelet keeps its own.
  local d
  for d in /var/lib/cni/results /var/lib/cni /var/lib/kubelet/device-plugins /var/lib/kubelet \
    /var/log/containers /run/containerd/s /run/containerd; do
    rmdir "$d" 2>/dev/null || true
  done
  rm -rf "${NODE_DIR:?}/containerd/state" "$NODE_DIR/cni/ipam" "$NODE_DIR/cni/cache"
}

# kubelet_chains: the iptables chains the kubelet makes (TABLE CHAIN lines).
kubelet_chains() {
  local t
  for t in filter nat mangle; do
    iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" && $2 ~ /^KUBE-(FIREWALL|KUBELET-CANARY|IPTABLES-HINT)$/ { print t, $2 }'
  done
}

remove_kubelet_chains() {
  local t c
  iptables -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
  iptables -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
  while read -r t c; do
    [[ -n $c ]] || continue
    iptables -t "$t" -F "$c" 2>/dev/null || true
    iptables -t "$t" -X "$c" 2>/dev/null || true
  done < <(kubelet_chains)
}

# node_leftovers: what of the node is still there (empty when stop_node did
# its work).
node_leftovers() {
  # Each check on its own: one finding nothing must not end the others.
  { pgrep -af "containerd-shim.*$NODE_SOCK|$NODE_DIR/" | grep -v pgrep; } || true
  awk -v d="$NODE_DIR" '$2 == d || index($2, d "/") == 1 { print "mount " $2 }' /proc/self/mounts || true
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then echo "network bridge $NODE_BRIDGE"; fi
  if [[ -f $NODE_DIR/kubelet.cgroups ]]; then
    { find /sys/fs/cgroup/*/kubepods* -maxdepth 0 -type d 2>/dev/null | sed 's/^/cgroup /'; } || true
    { kubelet_chains | sed 's/^/iptables chain /'; } || true
  fi
  { find /var/log/containers -maxdepth 1 -lname "$NODE_DIR/*" 2>/dev/null | sed 's/^/log link /'; } || true
  { grep -lsF "$NODE_DIR/" /var/lib/cni/results/* | sed 's/^/CNI state /'; } || true
  if [[ -S /var/lib/kubelet/device-plugins/kubelet.sock ]]; then echo "kubelet device-plugin socket"; fi
  if [[ -f $NODE_DIR/kube-proxy.rules ]]; then echo "kube-proxy's iptables chains"; fi
  if [[ -f $NODE_DIR/sysctl.saved ]]; then echo "host sysctls not restored ($NODE_DIR/sysctl.saved)"; fi
}
