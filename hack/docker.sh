#!/usr/bin/env bash
# A Docker engine and a BuildKit-capable client, for `make image` and `make e2e`.
#
#   hack/docker.sh            # make sure an engine runs; print the client command line to use
#
# - No engine answering: install Debian's `docker.io` with apt-get when `dockerd` is missing
#   (root only), then start `dockerd` in the background, logging to
#   ~/.cache/nexar-token-operator/dockerd.log, and wait for it.
# - The client: `docker` when it has the buildx plugin (`docker buildx build` is BuildKit);
#   otherwise Debian's own 20.10 client (/usr/bin/docker), which speaks to the engine's built-in
#   BuildKit with DOCKER_BUILDKIT=1. A newer client without buildx cannot use BuildKit at all, and
#   the Dockerfile needs it (`RUN --mount=type=secret` for the build CA).
# Prints one line, e.g. `docker buildx build --load` or `env DOCKER_BUILDKIT=1 /usr/bin/docker build`.
set -euo pipefail

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
log() { echo "[docker] $*" >&2; }

engine_up() { docker info >/dev/null 2>&1 || /usr/bin/docker info >/dev/null 2>&1; }

if ! engine_up; then
  if ! command -v dockerd >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || { echo "no Docker engine runs and dockerd is not installed; install Docker (or run as root to let this script apt-get docker.io)" >&2; exit 1; }
    log "installing Debian's docker.io (dockerd, containerd, runc)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends docker.io >&2
  fi
  [[ $(id -u) -eq 0 ]] || { echo "no Docker engine runs; start dockerd (needs root)" >&2; exit 1; }
  mkdir -p "$cache_root"
  log "starting dockerd (log: $cache_root/dockerd.log)"
  # setsid: the engine outlives this script and make; it is the machine's engine, not the run's.
  setsid dockerd >>"$cache_root/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    engine_up && break
    sleep 0.5
  done
  engine_up || { echo "dockerd did not answer within 60 s; last lines of $cache_root/dockerd.log:" >&2; tail -20 "$cache_root/dockerd.log" >&2; exit 1; }
fi

if docker buildx version >/dev/null 2>&1; then
  echo "docker buildx build --load"
elif [[ -x /usr/bin/docker ]] && DOCKER_BUILDKIT=1 /usr/bin/docker build --help 2>/dev/null | grep -q -- '--secret'; then
  echo "env DOCKER_BUILDKIT=1 /usr/bin/docker build"
elif DOCKER_BUILDKIT=1 docker build --help 2>/dev/null | grep -q -- '--secret'; then
  echo "env DOCKER_BUILDKIT=1 docker build"
else
  echo "no Docker client with BuildKit: install the buildx plugin (docker-buildx)" >&2
  exit 1
fi
