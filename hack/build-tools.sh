#!/usr/bin/env bash
# Builds the release tools the chart and alert checks need, once, from the Go module proxy, and
# caches each under the user's cache directory keyed by name and version (like build-assets.sh):
#
#   ~/.cache/nexar-token-operator/tools/helm-v3.22.0/helm           (module helm.sh/helm/v3, ./cmd/helm)
#   ~/.cache/nexar-token-operator/tools/promtool-v0.316.0/promtool  (module github.com/prometheus/prometheus, ./cmd/promtool)
#
#   hack/build-tools.sh            # build (or reuse) both; print one line per tool: NAME=PATH
#   hack/build-tools.sh helm       # print the path of one tool (building it if needed)
#   hack/build-tools.sh --env      # print `export HELM_BIN=… PROMTOOL_BIN=…` for eval
#
# HELM_BIN / PROMTOOL_BIN, when set to an executable, win: nothing is built for that tool.
# Versions: HELM_VERSION, PROMTOOL_MODULE_VERSION. The Prometheus Go module is tagged v0.X.Y for
# Prometheus release 3.X.Y; its version package is set through ldflags as `make build` would.
# Both are built as dependencies of a throw-away module: replace directives of a dependency's
# go.mod are ignored by Go, so the build must not rely on them (neither module has any in these
# versions; the script checks and fails loudly if a future version adds some).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-3.22.0}"
PROMTOOL_MODULE_VERSION="${PROMTOOL_MODULE_VERSION:-0.316.0}"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/nexar-token-operator"
log() { echo "[build-tools] $*" >&2; }

# new_module DIR MODULE@VERSION: a fresh module in DIR requiring MODULE@VERSION; prints the dependency's go.mod path.
new_module() {
  local dir=$1 modver=$2
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init "nexar-token-operator.local/$(basename "$dir")" >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "$modver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -n "$gomod" ]] || { echo "go mod download $modver failed" >&2; exit 1; }
  if grep -Eq '^[[:space:]]*replace[[:space:]]' "$gomod"; then
    # Go ignores a dependency's replace directives; a version that relies on them needs them
    # copied here. Neither pinned version has any, so fail loudly rather than build something else.
    echo "$modver: its go.mod has replace directives; copy them into $dir/go.mod (go mod edit -replace)" >&2
    exit 1
  fi
  go mod edit -require="$modver"
  echo "$gomod"
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

resolve() {
  case "$1" in
    helm)
      if [[ -n "${HELM_BIN:-}" ]]; then
        [[ -x "$HELM_BIN" ]] || { echo "HELM_BIN=$HELM_BIN is not executable" >&2; exit 1; }
        echo "$HELM_BIN"
      else build_helm; fi ;;
    promtool)
      if [[ -n "${PROMTOOL_BIN:-}" ]]; then
        [[ -x "$PROMTOOL_BIN" ]] || { echo "PROMTOOL_BIN=$PROMTOOL_BIN is not executable" >&2; exit 1; }
        echo "$PROMTOOL_BIN"
      else build_promtool; fi ;;
    *) echo "unknown tool: $1 (helm|promtool)" >&2; exit 2 ;;
  esac
}

export GOFLAGS="-mod=mod" CGO_ENABLED=0
mkdir -p "$cache_root/build" "$cache_root/tools"
case "${1:-}" in
  helm | promtool) resolve "$1" ;;
  --env)
    h=$(resolve helm)
    p=$(resolve promtool)
    echo "export HELM_BIN='$h' PROMTOOL_BIN='$p'"
    ;;
  "")
    echo "helm=$(resolve helm)"
    echo "promtool=$(resolve promtool)"
    ;;
  *) echo "usage: $0 [helm|promtool|--env]" >&2; exit 2 ;;
esac
