#!/usr/bin/env bash
# make image: terminal-apiserver's container image, built offline with Go alone
# (hack/ociimage, go-containerregistry: no Docker engine, no base image to pull),
# as a tarball that `ctr images import` and `docker load` take:
#
#   _output/images/terminal-apiserver-VERSION.tar   tagged IMAGE_REPO:VERSION
#
# A static binary (CGO off, -trimpath, stamped with its version), Mozilla's CA
# certificates at the version hack/ociimage/go.sum pins (not the build machine's),
# the non-root user 65532, no shell; reproducible: the same commit and Go version
# make the same image digest. The image is then read back and checked
# (hack/ociimage's tests on the file written). The Dockerfile builds the same
# image with Docker, for those who do.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/meshery/terminal-apiserver}
ldflags=$(hack/version.sh)
version=$(sed -E 's/.*pkg\/version\.version=([^ ]+).*/\1/' <<<"$ldflags")
# A tag is [A-Za-z0-9_.-], at most 128 characters: anything else in a version
# becomes '-'.
tag=${IMAGE_TAG:-$(tr -c 'A-Za-z0-9_.\n-' '-' <<<"$version" | cut -c1-128)}
arch=$(go env GOARCH)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
out=_output/images
mkdir -p "$out/linux_$arch"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "-s -w -buildid= $ldflags" \
  -o "$out/linux_$arch/terminal-apiserver" ./cmd/terminal-apiserver
file="$out/terminal-apiserver-$tag.tar"
(cd hack/ociimage && go run . -arch "$arch" -binary "$ROOT/$out/linux_$arch/terminal-apiserver" \
  -tag "$IMAGE_REPO:$tag" -version "$version" -revision "$commit" \
  -created "$created" -out "$ROOT/$file")
(cd hack/ociimage && IMAGE_FILE="$ROOT/$file" IMAGE_REF="$IMAGE_REPO:$tag" go test -count=1 -run 'TestImageAsARuntimeSeesIt|TestTarballCarriesTheTag' . >/dev/null)
echo "$IMAGE_REPO:$tag $ROOT/$file"
