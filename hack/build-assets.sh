#!/usr/bin/env bash
# Builds the control-plane binaries the test harness and `make demo` need, once, from the
# Go module proxy, and caches them under the user's cache directory keyed by version.
#
#   hack/build-assets.sh            # build (or reuse) kube-apiserver, kube-controller-manager, etcd
#   hack/build-assets.sh --print    # print the assets directory (after building if needed)
#   hack/build-assets.sh --node     # also kubelet, kube-scheduler and kube-proxy (a real node, for e2e)
#
# KUBEBUILDER_ASSETS, when set, wins: nothing is built and that directory is printed.
# Versions: k8s.io/kubernetes is not meant to be imported, so every k8s.io/* staging module
# it replaces with ./staging/src/... is pinned here to the matching v0.X.Y tag.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"

WANT_NODE=0
for arg in "$@"; do
  case "$arg" in
    --print) ;;
    --node) WANT_NODE=1 ;;
    *) echo "usage: $0 [--print] [--node]" >&2; exit 2 ;;
  esac
done
NODE_BINARIES=(kubelet kube-scheduler kube-proxy)

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  wanted=(etcd kube-apiserver)
  [[ $WANT_NODE -eq 1 ]] && wanted+=("${NODE_BINARIES[@]}")
  for b in "${wanted[@]}"; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $b" >&2; exit 1; }
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
out="$cache_root/assets/k8s-v${K8S_VERSION}-etcd-v${ETCD_VERSION}"
log() { echo "[build-assets] $*" >&2; }

have_node() {
  local b
  for b in "${NODE_BINARIES[@]}"; do [[ -x "$out/$b" ]] || return 1; done
}
if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/etcd" ]] &&
  { [[ $WANT_NODE -eq 0 ]] || have_node; }; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "Go is required to build the control plane (or set KUBEBUILDER_ASSETS)" >&2; exit 1; }
mkdir -p "$cache_root/build" "$out"
export GOFLAGS="-mod=mod" CGO_ENABLED=0

# build_k8s CMD…: build k8s.io/kubernetes/cmd/<CMD> for each CMD into $out.
build_k8s() {
  local dir="$cache_root/build/k8s-v${K8S_VERSION}"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init nexar-token-operator.local/k8s-assets >/dev/null 2>&1
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local minor="${K8S_VERSION#*.}"
  local args=()
  while read -r mod; do
    args+=("-replace=${mod}=${mod}@v0.${minor}")
  done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile")
  go mod edit "${args[@]}"
  go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
  local pkgs=()
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  log "building $* v${K8S_VERSION} (cold build: several minutes)"
  go build -trimpath -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}" \
    -o "$out/" "${pkgs[@]}"
}

build_etcd() {
  local dir="$cache_root/build/etcd-v${ETCD_VERSION}"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init nexar-token-operator.local/etcd-assets >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
  log "building etcd v${ETCD_VERSION}"
  go build -trimpath -ldflags="-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
}

[[ -x "$out/etcd" ]] || build_etcd
[[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" ]] || (build_k8s kube-apiserver kube-controller-manager)
if [[ $WANT_NODE -eq 1 ]] && ! have_node; then (build_k8s "${NODE_BINARIES[@]}"); fi
echo "$out"
