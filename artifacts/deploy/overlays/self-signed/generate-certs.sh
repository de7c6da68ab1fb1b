#!/usr/bin/env bash
# Generates what overlays/self-signed needs into generated/: a CA of its own
# (ECDSA P-256, 10 years; kept if it exists), terminal-apiserver's serving
# certificate (the name the aggregator verifies) and NATS's (clients and cluster
# routes), each for a year, and the APIService patch that sets spec.caBundle to
# the CA. Needs openssl. Run it again before the certificates expire: the server
# reloads its certificate from disk, NATS on a restart.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
out=generated
mkdir -p "$out"
chmod 700 "$out"
# The namespace the base installs into (its names are in the SANs).
ns=terminal-system

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/$1.key" 2>/dev/null; chmod 600 "$out/$1.key"; }

if [[ ! -f $out/ca.crt || ! -f $out/ca.key ]]; then
  key ca
  openssl req -x509 -new -key "$out/ca.key" -subj "/CN=terminal-apiserver-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.crt" 2>/dev/null
fi

# cert NAME CN EXTENDED-KEY-USAGE SAN...
cert() {
  local name=$1 cn=$2 eku=$3 san
  shift 3
  san=$(printf 'DNS:%s,' "$@")
  key "$name"
  openssl req -new -key "$out/$name.key" -subj "/CN=$cn" -out "$out/$name.csr" 2>/dev/null
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -days 365 \
    -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$eku" "${san%,}") \
    -out "$out/$name.crt" 2>/dev/null
  rm -f "$out/$name.csr"
}

cert serving "terminal-apiserver.$ns.svc" serverAuth \
  "terminal-apiserver.$ns.svc" "terminal-apiserver.$ns.svc.cluster.local"
cert nats "nats.$ns.svc" serverAuth,clientAuth \
  "nats.$ns.svc" "nats.$ns.svc.cluster.local" "*.nats-headless.$ns.svc" "*.nats-headless.$ns.svc.cluster.local"

cat >"$out/apiservice-cabundle.yaml" <<PATCH
# Written by generate-certs.sh: the CA that verifies terminal-apiserver's certificate.
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.terminal.meshery.io
spec:
  caBundle: $(base64 -w0 <"$out/ca.crt")
PATCH
echo "generated/: CA $(openssl x509 -in "$out/ca.crt" -noout -fingerprint -sha256 | cut -d= -f2), certificates until $(openssl x509 -in "$out/serving.crt" -noout -enddate | cut -d= -f2)"
