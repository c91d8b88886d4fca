#!/usr/bin/env bash
# Builds the dev/test kube-apiserver (embedded etcd) and kubectl from this Go module
# into .cache/apiserver/<key>/, key = hash of go.mod, go.sum, main.go and `go version`.
# Rebuilds only when that key changes. Prints the binary directory on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
command -v go >/dev/null || { echo "build.sh: go not found (expected /usr/local/go/bin/go)" >&2; exit 1; }

k8s_version=v1.35.4
key="$( { cat "$here/go.mod" "$here/go.sum" "$here/main.go"; go version; } | sha256sum | cut -c1-16)"
out="$repo/.cache/apiserver/$key"
if [[ -x "$out/apiserver" && -x "$out/kubectl" ]]; then
  echo "build.sh: up to date ($out)" >&2
  echo "$out"
  exit 0
fi

start=$(date +%s)
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=35"
echo "build.sh: building apiserver + kubectl ($k8s_version, $(go version)) into $out" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/apiserver" . >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
