# nexar-token-operator container image (needs BuildKit: Docker 23+ builds with it by default).
#
#   docker build -t nexar-token-operator:0.1.0 .
#   docker run --rm --read-only nexar-token-operator:0.1.0 --version
#
# Behind a TLS-inspecting proxy, hand npm the proxy's CA bundle as a build secret; it is mounted
# only while `npm install` runs and never lands in a layer:
#
#   docker build --secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt -t nexar-token-operator:0.1.0 .
#
# `make image` does all of this, and builds both base images locally when no registry is
# reachable (hack/image.sh).
#
# Stages: `build` compiles TypeScript with every dependency; `deps` installs production
# dependencies only; `runtime` is a distroless base (glibc and libstdc++, no shell, no package
# manager) with the Node binary of the build stage, dist/, those node_modules and package.json. It
# runs as uid 65532 and writes nothing to its filesystem (works with readOnlyRootFilesystem).
ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Not `npm ci`: vite lists an optional dependency the registry does not serve, which `npm ci`
# rejects; `npm install` with the lockfile installs the locked versions.
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/build-ca; fi; \
    npm install --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/build-ca; fi; \
    npm install --omit=dev --ignore-scripts --no-audit --no-fund
# Nothing reads type declarations, source maps or Markdown at run time (about 40 MiB, most of it
# @kubernetes/client-node's generated models).
RUN find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' \) -delete

FROM ${RUNTIME_IMAGE} AS runtime
# The same Node binary the build stages ran; no npm, corepack or yarn at run time.
COPY --from=build /usr/local/bin/node /usr/local/bin/node
ENV NODE_ENV=production
# Footprint (BENCHMARKS.md, P4): a 4 MiB young generation, and two glibc malloc arenas instead of
# 8 per core (the operator runs one JavaScript thread). The Helm chart also caps the old generation.
ENV NODE_OPTIONS="--max-semi-space-size=4" MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# 65532 is the conventional "nonroot" uid/gid (distroless); the chart's securityContext uses it too.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/node", "--enable-source-maps", "dist/cli/main.js"]
CMD ["run"]
LABEL org.opencontainers.image.title="nexar-token-operator" \
      org.opencontainers.image.description="Keeps Nexar API OAuth 2.0 access tokens fresh inside Kubernetes Secrets" \
      org.opencontainers.image.licenses="Apache-2.0"
