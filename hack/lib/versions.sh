# shellcheck shell=bash
# The pinned versions of the local control plane, in one place: kube and etcd
# come from hack/tools/go.mod (what is built is what it requires; changing a
# version there is the only way to change it), kwok from KWOK_VERSION here
# (it is installed with `go install`, outside the tools module, whose k8s.io
# replaces it would not build against). TOOLS_BIN is keyed by all three.
# Needs ROOT.

# tool_version MODULE: the version hack/tools/go.mod requires of MODULE.
tool_version() {
  awk -v m="$1" '$1 == m { print $2; exit }' "$ROOT/hack/tools/go.mod"
}

KUBE_VERSION=$(tool_version k8s.io/kubernetes)
ETCD_VERSION=$(tool_version go.etcd.io/etcd/server/v3)
KWOK_VERSION=v0.8.0
[[ -n $KUBE_VERSION && -n $ETCD_VERSION ]] || { echo "hack/tools/go.mod does not require k8s.io/kubernetes and etcd" >&2; exit 1; }
TOOLS_BIN=${TOOLS_BIN:-$ROOT/_output/tools/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin}

# Helm, for the chart's lint and render checks (hack/test-chart.sh): built from
# its module with `go install`, like kwok, into a folder keyed by its version.
HELM_VERSION=v3.22.0
HELM_BIN=$ROOT/_output/tools/helm-$HELM_VERSION/bin/helm
ensure_helm() {
  [[ -x $HELM_BIN ]] || GOBIN=$(dirname "$HELM_BIN") go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# CoreDNS, the local node's cluster DNS (hack/lib/node.sh): built from its
# module with `go install` like helm, into a folder keyed by its version.
COREDNS_VERSION=v1.15.0
COREDNS_BIN=$ROOT/_output/tools/coredns-$COREDNS_VERSION/bin/coredns
ensure_coredns() {
  [[ -x $COREDNS_BIN ]] || CGO_ENABLED=0 GOBIN=$(dirname "$COREDNS_BIN") go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}
