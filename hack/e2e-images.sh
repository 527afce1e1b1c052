#!/usr/bin/env bash
# The images the e2e node runs besides the operator's, built locally (no registry is needed) into Docker's
# image store, and one `docker save` archive of them and the operator image for the node's runtime.
#
#   hack/e2e-images.sh OPERATOR_IMAGE OUT.tar
#
#   localhost/nexar-e2e/pause:3.10   the pod sandbox: Kubernetes' own build/pause/linux/pause.c (from the
#                                    k8s.io/kubernetes module that hack/build-assets.sh builds from), static
#   localhost/nexar-e2e/busybox:1    the consumer workload: Debian's busybox-static (sh, cat, sha256sum, date …)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -eq 2 ]] || { echo "usage: $0 OPERATOR_IMAGE OUT.tar" >&2; exit 2; }
operator_image=$1 out=$2
K8S_VERSION="${K8S_VERSION:-1.35.4}"
PAUSE_IMAGE=localhost/nexar-e2e/pause:3.10
BUSYBOX_IMAGE=localhost/nexar-e2e/busybox:1
log() { echo "[e2e-images] $*" >&2; }
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
work="$cache_root/images/e2e"
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have_image "$PAUSE_IMAGE"; then
  rm -rf "$work/pause" && mkdir -p "$work/pause"
  src=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -f "$src/build/pause/linux/pause.c" ]] || { echo "no build/pause/linux/pause.c in $src" >&2; exit 1; }
  log "building $PAUSE_IMAGE from $src/build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION="v3.10-nexar-e2e" -o "$work/pause/pause" "$src/build/pause/linux/pause.c"
  strip "$work/pause/pause"
  tar -C "$work/pause" -c pause | docker import --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' - "$PAUSE_IMAGE" >/dev/null
fi

if ! have_image "$BUSYBOX_IMAGE"; then
  rm -rf "$work/busybox" && mkdir -p "$work/busybox/deb" "$work/busybox/root/bin" "$work/busybox/root/tmp"
  log "building $BUSYBOX_IMAGE from Debian's busybox-static"
  (cd "$work/busybox/deb" && apt-get download busybox-static >/dev/null 2>&1) ||
    { apt-get update -qq >&2 && (cd "$work/busybox/deb" && apt-get download busybox-static >/dev/null); }
  dpkg-deb -x "$work"/busybox/deb/busybox-static_*.deb "$work/busybox/x"
  cp "$work/busybox/x/bin/busybox" "$work/busybox/root/bin/busybox"
  for a in sh cat sha256sum date sleep ls env; do ln -s busybox "$work/busybox/root/bin/$a"; done
  chmod 1777 "$work/busybox/root/tmp"
  tar -C "$work/busybox/root" -c . | docker import --change 'ENV PATH=/bin' --change 'CMD ["sh"]' - "$BUSYBOX_IMAGE" >/dev/null
fi

mkdir -p "$(dirname "$out")"
docker save -o "$out.tmp" "$operator_image" "$PAUSE_IMAGE" "$BUSYBOX_IMAGE"
mv "$out.tmp" "$out"
log "saved $operator_image, $PAUSE_IMAGE and $BUSYBOX_IMAGE to $out"
