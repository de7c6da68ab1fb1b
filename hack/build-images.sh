#!/usr/bin/env bash
# Builds the local node's container images offline, from Debian's packages and
# this repository, as docker-archive tarballs that `ctr images import` takes
# (pods use them with imagePullPolicy: Never):
#
#   terminal.local/pause:1     the pod sandbox: one static C program
#   terminal.local/busybox:1   busybox-static with every applet (sh, env, ps, top, nc, wget, ...)
#   terminal.local/bash:1      the busybox image plus Debian's bash and its libraries
#   terminal.local/static:1    one static Go binary and nothing else: no shell
#   terminal.local/nats:1      the busybox image plus nats-server at the version go.mod
#                              pins, as nats:alpine (entrypoint nats-server, flags as
#                              args; a shell for the StatefulSet's reloader), for the
#                              in-cluster install (hack/test-incluster.sh)
#   terminal.local/nats-box:1  the busybox image plus the nats CLI (natscli, pinned
#                              below), as natsio/nats-box: backups of the in-cluster
#                              install's JetStream (test/incluster)
#
# The tarballs are reproducible (sorted entries, zero times and owners, fixed
# config) and cached in NODE_IMAGES_DIR, keyed by this script, the sources and the
# package versions; a second run is a no-op. Prints NODE_IMAGES_DIR.
set -euo pipefail

# The nats CLI in nats-box: the release whose `nats backup` reads what the
# nats-server go.mod pins writes.
NATSCLI_VERSION=v0.5.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for tool in gcc busybox bash sha256sum tar; do
  command -v "$tool" >/dev/null || { echo "$tool is required (make up with LOCAL_NODE=real installs it)" >&2; exit 1; }
done

key=$( {
  cat "$0" "$ROOT"/hack/images/pause/pause.c "$ROOT"/hack/images/static/main.go
  grep nats-server "$ROOT/go.mod"
  echo "natscli $NATSCLI_VERSION"
  dpkg-query -W -f '${Package} ${Version}\n' busybox-static bash libc6 libtinfo6 2>/dev/null || true
  go version
} | sha256sum | cut -c1-12)
NODE_IMAGES_DIR=${NODE_IMAGES_DIR:-$ROOT/_output/tools/images-$key}
if [[ -f $NODE_IMAGES_DIR/done ]]; then
  echo "$NODE_IMAGES_DIR"
  exit 0
fi
rm -rf "$NODE_IMAGES_DIR"
mkdir -p "$NODE_IMAGES_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# image NAME ROOTFS CMD-JSON [ENTRYPOINT-JSON]: writes NODE_IMAGES_DIR/NAME.tar.
image() {
  local name=$1 rootfs=$2 cmd=$3 entrypoint=${4:-null} dir=$work/$1-archive
  mkdir -p "$dir"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$rootfs" -cf "$dir/layer.tar" .
  local diff config
  diff=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entrypoint" "$cmd" "$diff" >"$dir/config.json"
  config=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mv "$dir/config.json" "$dir/$config.json"
  printf '[{"Config":"%s.json","RepoTags":["terminal.local/%s:1"],"Layers":["layer.tar"]}]' "$config" "$name" >"$dir/manifest.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$dir" -cf "$NODE_IMAGES_DIR/$name.tar" manifest.json "$config.json" layer.tar
}

# A root file system's skeleton: what a container expects to find.
skeleton() {
  local r=$1
  mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,var/run}
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
}

echo ">> building the local node's images in ${NODE_IMAGES_DIR#"$ROOT"/}" >&2

# pause
mkdir -p "$work/pause/rootfs"
gcc -static -Os -s -o "$work/pause/rootfs/pause" "$ROOT/hack/images/pause/pause.c"
image pause "$work/pause/rootfs" '["/pause"]'

# busybox: every applet as a link to the one binary
bb=$work/busybox/rootfs
skeleton "$bb"
cp "$(command -v busybox)" "$bb/bin/busybox"
for applet in $("$bb/bin/busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$bb/bin/$applet"
done
image busybox "$bb" '["sh"]'

# bash: the busybox image plus bash and the libraries it loads
bs=$work/bash/rootfs
mkdir -p "$(dirname "$bs")"
cp -a "$bb" "$bs"
rm "$bs/bin/bash" 2>/dev/null || true
cp "$(command -v bash)" "$bs/bin/bash"
for lib in $(ldd "$(command -v bash)" | grep -o '/[^ ]*'); do
  mkdir -p "$bs$(dirname "$lib")"
  cp -L "$lib" "$bs$lib"
done
sed -i 's#root:/bin/sh#root:/bin/bash#' "$bs/etc/passwd"
image bash "$bs" '["bash"]'

# static: no shell at all
st=$work/static/rootfs
mkdir -p "$st"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" -o "$st/static" ./hack/images/static)
image static "$st" '["/static"]'

# nats: busybox and the server, at /usr/local/bin as in the official image
# (the StatefulSet's preStop hook and reloader run nats-server by PATH).
nt=$work/nats/rootfs
mkdir -p "$(dirname "$nt")"
cp -a "$bb" "$nt"
mkdir -p "$nt/usr/local/bin"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" -o "$nt/usr/local/bin/nats-server" github.com/nats-io/nats-server/v2)
image nats "$nt" '["--config","/etc/nats/nats-server.conf"]' '["nats-server"]'

# nats-box: busybox (a shell, tar for kubectl cp) and the nats CLI, built
# once into the Go cache.
nb=$work/nats-box/rootfs
mkdir -p "$(dirname "$nb")"
cp -a "$bb" "$nb"
mkdir -p "$nb/usr/local/bin"
(cd "$work" && GOBIN="$nb/usr/local/bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -buildid=" \
  "github.com/nats-io/natscli/nats@$NATSCLI_VERSION")
image nats-box "$nb" '["sh"]'

touch "$NODE_IMAGES_DIR/done"
echo "$NODE_IMAGES_DIR"
