#!/usr/bin/env bash
# `make e2e`: the operator as users run it, on a real node (test/e2e/e2e.test.ts).
#
# 1. the image (hack/image.sh: Docker engine, local base images when no registry answers);
# 2. kubelet, kube-scheduler and kube-proxy beside the control plane (hack/build-assets.sh --node), helm;
# 3. the pause and consumer images, and one archive of all three for the node's runtime (hack/e2e-images.sh);
# 4. the suite, inside a network namespace of its own (`unshare --net`): the control plane, the node, its pods and
#    the test servers have that namespace's addresses only, and it vanishes with the run.
# Needs root (network namespace, containerd, kubelet). Debian packages it needs are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[e2e] $*" >&2; }
[[ $(id -u) -eq 0 ]] || { echo "make e2e needs root: it runs containerd and kubelet in a network namespace of its own" >&2; exit 1; }

t0=$(date +%s)
stamp() { log "$1 ($(($(date +%s) - t0)) s)"; }

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

image=$(hack/image.sh)
stamp "image: $image"
image=${image%% *}
assets=$(hack/build-assets.sh --node)
hack/build-tools.sh >/dev/null
stamp "kubelet, kube-scheduler, kube-proxy and helm"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
images_tar="$cache_root/images/e2e/images.tar"
hack/e2e-images.sh "$image" "$images_tar"
stamp "node images"

export KUBEBUILDER_ASSETS="$assets" E2E_IMAGES_TAR="$images_tar" E2E_IMAGE="$image"
NEXAR_E2E_HOST_NETNS=$(readlink /proc/self/ns/net)
export NEXAR_E2E_HOST_NETNS
status=0
unshare --net -- npx vitest run --project e2e "$@" || status=$?
stamp "suite done (exit $status)"
exit "$status"
