#!/usr/bin/env bash
# Builds the release tools the chart and alert checks, the interop suite and the peer benchmark
# need, once, from the Go module proxy, and caches each under the user's cache directory keyed by
# name and version (like build-assets.sh):
#
#   ~/.cache/nexar-token-operator/tools/helm-v3.22.0/helm           (module helm.sh/helm/v3, ./cmd/helm)
#   ~/.cache/nexar-token-operator/tools/promtool-v0.316.0/promtool  (module github.com/prometheus/prometheus, ./cmd/promtool)
#   ~/.cache/nexar-token-operator/tools/hydra-v2.3.0/hydra          (module github.com/ory/hydra/v2, its root; cgo + SQLite)
#   ~/.cache/nexar-token-operator/tools/eso-v0.16.2/eso             (module github.com/external-secrets/external-secrets, its root)
#     and beside it crds.yaml, the module's deploy/crds/bundle.yaml
#
#   hack/build-tools.sh                 # build (or reuse) helm, promtool and hydra (what `make test` needs); NAME=PATH lines
#   hack/build-tools.sh helm promtool   # print the path of each tool named (building it if needed), one a line
#   hack/build-tools.sh eso             # External Secrets Operator, for `make bench BENCH_ARGS=--peers` only
#   hack/build-tools.sh --env           # print `export HELM_BIN=… PROMTOOL_BIN=… HYDRA_BIN=…` for eval
#
# HELM_BIN / PROMTOOL_BIN / HYDRA_BIN / ESO_BIN, when set to an executable, win: nothing is built
# for that tool. Versions: HELM_VERSION, PROMTOOL_MODULE_VERSION, HYDRA_VERSION, ESO_VERSION. The
# Prometheus Go module is tagged v0.X.Y for Prometheus release 3.X.Y; its version package is set
# through ldflags as `make build` would.
# Each is built as a dependency of a throw-away module. Go ignores the replace directives of a
# dependency's go.mod, so those that point at another module version are copied into the
# throw-away module (Hydra v2.3.0 swaps gobuffalo/pop/v6 for ory/pop/v6; ESO v0.16.2 swaps
# Masterminds/sprig/v3 for its own fork). Replaces that point at a local directory cannot be
# followed (a nested module is not in the module zip) and are left out: the version the go.mod
# requires is used (Hydra's `hydra-client-go/v2 => ./internal/httpclient`; the required v2.2.1 is
# served and builds).
# Cold builds on 2 cores (module download + compile, empty Go caches): hydra about 6 min, eso
# about 8 min; see docs/operations.md.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
PROMTOOL_MODULE_VERSION="${PROMTOOL_MODULE_VERSION:-0.316.0}"
HYDRA_VERSION="${HYDRA_VERSION:-2.3.0}"
# v0.16.2 is the newest release the module proxy serves whole: v1.x splits into nested modules
# (…/apis, …/runtime, …/providers/v1/*) that its go.mod requires at v0.0.0 through `=> ./dir`
# replaces, and those are not served on their own.
ESO_VERSION="${ESO_VERSION:-0.16.2}"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
log() { echo "[build-tools] $*" >&2; }

# new_module DIR MODULE@VERSION: a fresh module in DIR requiring MODULE@VERSION, with the
# dependency's replace directives that point at a module version copied in (see the header).
new_module() {
  local dir=$1 modver=$2
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init "nexar-token-operator.local/$(basename "$dir")" >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "$modver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -n "$gomod" ]] || { echo "go mod download $modver failed" >&2; exit 1; }
  local old new
  while read -r old new; do
    case "$new" in
      ./* | ../* | /*) log "$modver: leaving out its replace $old => $new (a local directory)" ;;
      *)
        log "$modver: copying its replace $old => $new"
        go mod edit -replace="$old=$new"
        ;;
    esac
  done < <(replaces <"$gomod")
  go mod edit -require="$modver"
}

# replaces: reads a go.mod on stdin; prints "OLD NEW" per replace directive, each path or
# path@version (the syntax of `go mod edit -replace`). Handles both `replace a => b v` lines and
# `replace ( … )` blocks.
replaces() {
  awk '
    function emit(line,   n, f, i, arrow, old, new) {
      sub(/\/\/.*/, "", line)
      n = split(line, f, /[ \t]+/)
      old = ""; new = ""; arrow = 0
      for (i = 1; i <= n; i++) {
        if (f[i] == "") continue
        if (f[i] == "=>") { arrow = 1; continue }
        if (!arrow) old = old == "" ? f[i] : old "@" f[i]
        else new = new == "" ? f[i] : new "@" f[i]
      }
      if (old != "" && new != "") print old, new
    }
    /^replace[ \t]*\(/ { inblock = 1; next }
    inblock && /^[ \t]*\)/ { inblock = 0; next }
    inblock { emit($0); next }
    /^replace[ \t]/ { sub(/^replace[ \t]+/, ""); emit($0) }
  '
}

build_helm() {
  local out="$cache_root/tools/helm-v${HELM_VERSION}"
  if [[ -x "$out/helm" ]]; then echo "$out/helm"; return; fi
  command -v go >/dev/null || { echo "Go is required to build helm (or set HELM_BIN)" >&2; exit 1; }
  local dir="$cache_root/build/helm-v${HELM_VERSION}"
  (
    new_module "$dir" "helm.sh/helm/v3@v${HELM_VERSION}" >/dev/null
    cd "$dir"
    # Kubernetes version helm assumes for `helm template`/`lint` Capabilities (as helm's Makefile derives it).
    local kv major minor
    kv=$(go list -m -f '{{.Version}}' k8s.io/client-go)
    kv=${kv#v}
    major=$((${kv%%.*} + 1))
    minor=$(echo "$kv" | cut -d. -f2)
    log "building helm v${HELM_VERSION} (cold build: a few minutes)"
    mkdir -p "$out.tmp"
    go build -trimpath -ldflags="-s -w \
      -X helm.sh/helm/v3/internal/version.version=v${HELM_VERSION} \
      -X helm.sh/helm/v3/internal/version.metadata= \
      -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${major} \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor} \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${major} \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}" \
      -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm
    rm -rf "$out" && mv "$out.tmp" "$out"
  ) >&2
  echo "$out/helm"
}

build_promtool() {
  local out="$cache_root/tools/promtool-v${PROMTOOL_MODULE_VERSION}"
  if [[ -x "$out/promtool" ]]; then echo "$out/promtool"; return; fi
  command -v go >/dev/null || { echo "Go is required to build promtool (or set PROMTOOL_BIN)" >&2; exit 1; }
  local dir="$cache_root/build/promtool-v${PROMTOOL_MODULE_VERSION}"
  (
    new_module "$dir" "github.com/prometheus/prometheus@v${PROMTOOL_MODULE_VERSION}" >/dev/null
    cd "$dir"
    # Module v0.X.Y is Prometheus release 3.X.Y (v0.316.0 → 3.16.0).
    local minor=${PROMTOOL_MODULE_VERSION#*.}
    minor=${minor%%.*}
    release="3.$((minor - 300)).${PROMTOOL_MODULE_VERSION##*.}"
    log "building promtool (Prometheus ${release}, module v${PROMTOOL_MODULE_VERSION}; cold build: a few minutes)"
    mkdir -p "$out.tmp"
    # Tags: netgo as Prometheus' own release build; remove_all_sd drops every service-discovery
    # plugin (prometheus/plugins/plugin_*.go: `!remove_all_sd || enable_<name>_sd`), i.e. the AWS,
    # Azure, GCE, Kubernetes … SDKs, which `check rules`, `test rules` and `check metrics` never
    # use. That cuts the cold build from most of an hour to a few minutes on 2 cores. (Such a
    # promtool cannot `check config` a file using those SD mechanisms.)
    CGO_ENABLED=0 go build -trimpath -tags netgo,remove_all_sd -ldflags="-s -w \
      -X github.com/prometheus/common/version.Version=${release} \
      -X github.com/prometheus/common/version.Branch=HEAD \
      -X github.com/prometheus/common/version.BuildUser=nexar-token-operator" \
      -o "$out.tmp/promtool" github.com/prometheus/prometheus/cmd/promtool
    rm -rf "$out" && mv "$out.tmp" "$out"
  ) >&2
  echo "$out/promtool"
}

build_hydra() {
  local out="$cache_root/tools/hydra-v${HYDRA_VERSION}"
  if [[ -x "$out/hydra" ]]; then echo "$out/hydra"; return; fi
  command -v go >/dev/null || { echo "Go is required to build hydra (or set HYDRA_BIN)" >&2; exit 1; }
  command -v gcc >/dev/null || { echo "gcc is required to build hydra (cgo, for its SQLite store)" >&2; exit 1; }
  local dir="$cache_root/build/hydra-v${HYDRA_VERSION}"
  (
    new_module "$dir" "github.com/ory/hydra/v2@v${HYDRA_VERSION}"
    cd "$dir"
    log "building hydra v${HYDRA_VERSION} (cold build: about 6 minutes on 2 cores)"
    mkdir -p "$out.tmp"
    # `dsn: memory` is SQLite in memory: cgo and the sqlite tag, as Hydra's own release build
    # (Hydra stops with "SQLite support was not built into the binary" without it).
    CGO_ENABLED=1 go build -trimpath -tags sqlite,sqlite_omit_load_extension -ldflags="-s -w \
      -X github.com/ory/hydra/v2/driver/config.Version=v${HYDRA_VERSION}" \
      -o "$out.tmp/hydra" github.com/ory/hydra/v2
    rm -rf "$out" && mv "$out.tmp" "$out"
  ) >&2
  echo "$out/hydra"
}

build_eso() {
  local out="$cache_root/tools/eso-v${ESO_VERSION}"
  if [[ -x "$out/eso" && -f "$out/crds.yaml" ]]; then echo "$out/eso"; return; fi
  command -v go >/dev/null || { echo "Go is required to build eso (or set ESO_BIN)" >&2; exit 1; }
  local dir="$cache_root/build/eso-v${ESO_VERSION}"
  (
    new_module "$dir" "github.com/external-secrets/external-secrets@v${ESO_VERSION}"
    cd "$dir"
    log "building External Secrets Operator v${ESO_VERSION} (cold build: about 8 minutes on 2 cores)"
    mkdir -p "$out.tmp"
    go build -trimpath -ldflags="-s -w" -o "$out.tmp/eso" github.com/external-secrets/external-secrets
    cp "$(go list -m -f '{{.Dir}}' github.com/external-secrets/external-secrets)/deploy/crds/bundle.yaml" "$out.tmp/crds.yaml"
    chmod u+w "$out.tmp/crds.yaml"
    rm -rf "$out" && mv "$out.tmp" "$out"
  ) >&2
  echo "$out/eso"
}

# resolve NAME: the path of tool NAME; NAME_BIN (upper case) wins when set.
resolve() {
  local var
  case "$1" in
    helm | promtool | hydra | eso) var="$(echo "$1" | tr '[:lower:]' '[:upper:]')_BIN" ;;
    *) echo "unknown tool: $1 (helm|promtool|hydra|eso)" >&2; exit 2 ;;
  esac
  if [[ -n "${!var:-}" ]]; then
    [[ -x "${!var}" ]] || { echo "$var=${!var} is not executable" >&2; exit 1; }
    echo "${!var}"
  else "build_$1"; fi
}

export GOFLAGS="-mod=mod" CGO_ENABLED=0
mkdir -p "$cache_root/build" "$cache_root/tools"
case "${1:-}" in
  --env)
    h=$(resolve helm)
    p=$(resolve promtool)
    y=$(resolve hydra)
    echo "export HELM_BIN='$h' PROMTOOL_BIN='$p' HYDRA_BIN='$y'"
    ;;
  "")
    echo "helm=$(resolve helm)"
    echo "promtool=$(resolve promtool)"
    echo "hydra=$(resolve hydra)"
    ;;
  -*) echo "usage: $0 [--env | NAME...] (NAME: helm, promtool, hydra, eso)" >&2; exit 2 ;;
  *) for name in "$@"; do resolve "$name"; done ;;
esac
