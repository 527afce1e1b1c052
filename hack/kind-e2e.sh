#!/usr/bin/env bash
# `make kind-e2e`, for users with Docker and kind: the e2e suite (test/e2e/) on a kind cluster instead of the
# harness's node. Builds the image (hack/image.sh) and the consumer image (hack/e2e-images.sh), creates the kind
# cluster $KIND_CLUSTER (default nexar-token-operator-e2e; deleted afterwards unless KEEP_CLUSTER=1), loads both
# images, and runs the same assertions as `make e2e`. The suite's identity server listens on the kind network's
# gateway address, which pods reach.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-nexar-token-operator-e2e}"
log() { echo "[kind-e2e] $*" >&2; }
command -v kind >/dev/null || { echo "make kind-e2e needs kind (https://kind.sigs.k8s.io) on PATH" >&2; exit 1; }

image=$(hack/image.sh)
image=${image%% *}
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
hack/e2e-images.sh "$image" "$cache_root/images/e2e/images.tar" >/dev/null
hack/build-tools.sh >/dev/null

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "kind cluster $cluster exists: delete it first (kind delete cluster --name $cluster); the suite needs a fresh one" >&2
  exit 1
fi
log "creating kind cluster $cluster"
kind create cluster --name "$cluster" --wait 180s >&2
[[ "${KEEP_CLUSTER:-0}" == 1 ]] || trap 'kind delete cluster --name "$cluster" >&2' EXIT
kind load docker-image --name "$cluster" "$image" localhost/nexar-e2e/busybox:1 >&2

kubeconfig=$(mktemp)
kind get kubeconfig --name "$cluster" >"$kubeconfig"
gateway=$(docker network inspect kind --format '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | tr ' ' '\n' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' | head -n 1)
[[ -n "$gateway" ]] || { echo "no IPv4 gateway on the docker network 'kind'" >&2; exit 1; }

E2E_CLUSTER=kind E2E_KUBECONFIG="$kubeconfig" E2E_KIND_NODE="${cluster}-control-plane" E2E_HOST_ADDRESS="$gateway" \
  E2E_IMAGE="$image" npx vitest run --project e2e "$@"
