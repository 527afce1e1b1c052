# syntax=docker/dockerfile:1
# nexar-token-operator container image.
#
#   docker build -t nexar-token-operator:dev .
#   docker run --rm --read-only nexar-token-operator:dev --version
#
# Three stages: `build` compiles TypeScript with every dependency; `deps` installs production
# dependencies only; `runtime` gets dist/, those node_modules and package.json, runs as uid 65532
# and writes nothing to its filesystem (works with readOnlyRootFilesystem). npm is removed from the
# runtime image. test/integration/image.test.ts repeats the `deps` and `runtime` steps without Docker.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Not `npm ci`: vite lists an optional dependency the registry does not serve, which `npm ci`
# rejects; `npm install` with the lockfile installs the locked versions.
RUN npm install --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# No package manager at run time: smaller attack surface, nothing to write a cache.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn-* /usr/local/bin/yarn /usr/local/bin/yarnpkg
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
ENTRYPOINT ["node", "--enable-source-maps", "dist/cli/main.js"]
CMD ["run"]
LABEL org.opencontainers.image.title="nexar-token-operator" \
      org.opencontainers.image.description="Keeps Nexar API OAuth 2.0 access tokens fresh inside Kubernetes Secrets" \
      org.opencontainers.image.licenses="Apache-2.0"
