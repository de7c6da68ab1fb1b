#!/usr/bin/env bash
# The Helm chart (charts/terminal-apiserver): `helm lint` and `helm template` in
# both certificate modes, rendered into _output/chart/ for the e2e test that
# server-side dry-runs them (test/e2e/manifests_test.go).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=hack/lib/local.sh
source hack/lib/local.sh
ensure_helm
chart=charts/terminal-apiserver
out=_output/chart
mkdir -p "$out"
"$HELM_BIN" lint --strict "$chart"
"$HELM_BIN" lint --strict "$chart" --set certManager.enabled=true
# With nats.auth.create=false (renders without lookup), the Secret is the operator's.
if "$HELM_BIN" template terminal-apiserver "$chart" --namespace terminal-system --kube-version "${KUBE_VERSION#v}" --set nats.auth.create=false | grep -n '^  name: nats-auth$' >&2; then
  die "nats.auth.create=false still renders the Secret nats-auth"
fi
"$HELM_BIN" template terminal-apiserver "$chart" --namespace terminal-system --kube-version "${KUBE_VERSION#v}" >"$out/self-signed.yaml"
"$HELM_BIN" template terminal-apiserver "$chart" --namespace terminal-system --kube-version "${KUBE_VERSION#v}" --set certManager.enabled=true >"$out/cert-manager.yaml"
# Installed in another namespace, nothing of it names terminal-system (NATS
# routes, certificate names, RBAC subjects, the APIService's Service).
for mode in false true; do
  if "$HELM_BIN" template terminal-apiserver "$chart" --namespace elsewhere --kube-version "${KUBE_VERSION#v}" \
    --set certManager.enabled=$mode | grep -n terminal-system >&2; then
    die "the chart installed in namespace elsewhere (certManager.enabled=$mode) still names terminal-system"
  fi
done
log "chart rendered: $out/self-signed.yaml, $out/cert-manager.yaml"
