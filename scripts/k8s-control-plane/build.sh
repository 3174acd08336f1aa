#!/usr/bin/env bash
# Builds kube-apiserver + kube-controller-manager v1.20.2 from Debian bookworm's `kubernetes`
# source package (the full upstream tree with vendor/) and caches the two binaries, so the e2e
# suite (tests/k8s/) can run a real control plane on loopback. Installs the toolchain and etcd
# via apt when missing. Skips everything when the binaries are already cached.
#
# The source is fetched with a PRIVATE apt directory (deb-src copy of the system's sources):
# the system's apt configuration is left untouched.
#
# Usage: scripts/k8s-control-plane/build.sh        (cache dir: $TFSA_K8S_CACHE or
#        ~/.cache/tfserving-autoscaler/k8s-1.20.2)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

K8S_VERSION=1.20.2
SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${TFSA_K8S_CACHE:-$HOME/.cache/tfserving-autoscaler/k8s-$K8S_VERSION}"
BIN="$CACHE/bin"
# bump when the build changes; tests/k8s/controlplane.py refuses binaries of another revision
BUILD_REV="reflect2-1.0.2"
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2

cached() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] &&
    [ "$(cat "$BIN/BUILD_REV" 2>/dev/null)" = "$BUILD_REV" ]
}

if cached && command -v etcd >/dev/null; then
  echo "k8s $K8S_VERSION: cached in $BIN"
  exit 0
fi

need=()
command -v go >/dev/null || need+=(golang-go)
command -v rsync >/dev/null || need+=(rsync)
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
command -v make >/dev/null || need+=(make)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
[ -d "$REFLECT2" ] || need+=(golang-github-modern-go-reflect2-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "k8s: apt-get install ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if cached; then
  exit 0
fi

mkdir -p "$CACHE"
APTDIR="$CACHE/apt"
SRCDIR="$CACHE/src"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$SRCDIR"
# deb-src entries derived from the system's deb entries, in the private dir only
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$APTDIR/debian-src.sources"
aptopts=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$APTDIR"
         -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache")

tree=$(find "$SRCDIR" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
if [ -z "$tree" ]; then
  apt-get "${aptopts[@]}" update -qq
  (cd "$SRCDIR" && apt-get "${aptopts[@]}" source -qq "kubernetes=$SRC_VERSION")
  tree=$(find "$SRCDIR" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
fi
[ -n "$tree" ] || { echo "k8s: no unpacked kubernetes source in $SRCDIR" >&2; exit 1; }

cd "$tree"
# a failed earlier attempt leaves empty generator binaries behind: start clean
rm -rf _output
# v1.20.2 vendors modern-go/reflect2 v1.0.1, which Go >= 1.18 breaks: kube-apiserver dies with
# SIGSEGV in mapiterinit when json-iterator encodes a map (first seen creating a custom resource;
# modern-go/reflect2 issue 23, fixed in 1.0.2). Use Debian's packaged 1.0.2 instead.
rm -f vendor/github.com/modern-go/reflect2/*.go
for f in "$REFLECT2"/*.go; do
  case "$f" in *_test.go) ;; *) cp "$f" vendor/github.com/modern-go/reflect2/ ;; esac
done
# GOPATH layout as Debian's debian/rules does it
mkdir -p .go/src/k8s.io
[ -e .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
GOPATH="$PWD/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS= \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"

mkdir -p "$BIN"
for b in kube-apiserver kube-controller-manager; do
  install -m 0755 "_output/bin/$b" "$BIN/$b.tmp"
  mv "$BIN/$b.tmp" "$BIN/$b"
done
echo "$BUILD_REV" > "$BIN/BUILD_REV"
"$BIN/kube-apiserver" --version
# the tree and build outputs are ~2 GB; the binaries are all the tests need
cd "$CACHE" && rm -rf "$SRCDIR" "$APTDIR"
echo "k8s $K8S_VERSION: built into $BIN"
