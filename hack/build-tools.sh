#!/usr/bin/env bash
# Builds the pinned local control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) into a cache folder keyed by version, so a
# second run is a no-op. Versions: hack/lib/versions.sh (read from hack/tools/go.mod).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/versions.sh
source "$ROOT/hack/lib/versions.sh"
mkdir -p "$TOOLS_BIN"

major=${KUBE_VERSION#v}; major=${major%%.*}
minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() { # build NAME PACKAGE
  local name=$1 pkg=$2
  if [[ -x "$TOOLS_BIN/$name" ]]; then return; fi
  echo ">> building $name ($pkg)" >&2
  (cd "$ROOT/hack/tools" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$TOOLS_BIN/$name.tmp" "$pkg")
  mv "$TOOLS_BIN/$name.tmp" "$TOOLS_BIN/$name"
}

build etcd go.etcd.io/etcd/server/v3
build kubectl k8s.io/kubernetes/cmd/kubectl
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubelet k8s.io/kubernetes/cmd/kubelet
build kube-proxy k8s.io/kubernetes/cmd/kube-proxy

if [[ ! -x "$TOOLS_BIN/kwok" ]]; then
  echo ">> building kwok $KWOK_VERSION" >&2
  CGO_ENABLED=0 GOBIN="$TOOLS_BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

# kwok's CRDs and stage configs ship in its module; remember where they are.
go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p' > "$TOOLS_BIN/../kwok-dir"
echo "$TOOLS_BIN"
