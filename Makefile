# Entry points; the work is in hack/. `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash

.PHONY: all tools up down web build install image test verify unit fuzz fuzz-short e2e test-node test-browser test-reliability bench

all: build

# Pinned kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, etcd and kwok,
# built once into _output/tools/ (a second run is a no-op).
tools:
	hack/build-tools.sh

# Local control plane + terminal-apiserver; prints the KUBECONFIG/PATH lines to paste.
up:
	hack/local-up.sh

down:
	hack/local-down.sh

# The browser console (web/) into pkg/console/dist, embedded in kubectl-terminal;
# npm ci from web/package-lock.json first (hack/build-web.sh).
web:
	hack/build-web.sh

# Every command under cmd/ into _output/bin/, after the console they embed,
# stamped with their version (hack/version.sh; --version prints it).
build: web
	@mkdir -p _output/bin
	@if compgen -G 'cmd/*/*.go' >/dev/null; then go build -ldflags "$$(hack/version.sh)" -o _output/bin/ ./cmd/...; \
	else echo "nothing to build: no commands under cmd/ yet"; fi

# The kubectl plugin (kubectl terminal ...) into $(go env GOPATH)/bin; make up
# also puts it in _output/bin, on the PATH it prints.
install:
	go install -ldflags "$$(hack/version.sh)" ./cmd/kubectl-terminal

# terminal-apiserver's container image as a tarball, built with Go alone
# (hack/build-image.sh); IMAGE_REPO and IMAGE_TAG name it.
image:
	hack/build-image.sh

test: verify unit fuzz-short e2e test-node

verify:
	hack/verify.sh

unit:
	go test -race ./pkg/... ./cmd/...
	cd hack/ociimage && go test ./...
	hack/build-image.sh
	hack/build-web.sh --test

# Every fuzz target for FUZZTIME (default 60s) each; make test runs 2000 inputs
# of each (a count, not a time: a time limit can end mid-input and fail).
fuzz:
	hack/fuzz.sh

fuzz-short:
	FUZZTIME=2000x hack/fuzz.sh

e2e:
	hack/e2e.sh

# The local real node (LOCAL_NODE=real make up) up and down twice: pods run in
# real containers, and nothing is left behind (docs/local-node.md).
test-node:
	hack/test-node.sh

# The console in Debian's Chromium (playwright-core) on the running control
# plane, or a fresh one (e2e runs these too).
test-browser:
	hack/test-browser.sh

# The fault suite at full scale (100 sessions; NATS nodes, the stream
# leader and replicas killed for real), ending with its table of figures
# (docs/reliability.md). make test runs it at reduced scale within e2e.
test-reliability:
	hack/test-reliability.sh

bench:
	hack/bench.sh
