# syntax=docker/dockerfile:1
# wsgate container image: build the TypeScript in one stage, ship only dist/ and production dependencies.
#   docker build -t wsgate:latest .
#   docker run --rm -p 8080:8080 -p 8077:8077 -v "$PWD/my-config.yaml:/etc/wsgate/config.yaml:ro" wsgate:latest

ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first so the dependency layer is cached across source-only changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# Everything .dockerignore lets through (src/, bench/, tsconfig.json, config.example.yaml, ...).
COPY . .
# tsc emits only JavaScript; carry non-TypeScript assets under src/ (e.g. the admin status page) along.
RUN npm run build \
  && cd src && find . -type f ! -name '*.ts' -exec cp --parents {} ../dist/src/ \;

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Runtime dependencies are pure JavaScript, so no install scripts are needed.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The example config is a placeholder only: it binds every listener to 127.0.0.1 and points at demo
# backends. Mount your own at /etc/wsgate/config.yaml (deploy/kubernetes mounts a ConfigMap there).
# In a container, listeners and the admin listener (/metrics, /healthz, /readyz; admin.address
# defaults to 127.0.0.1) must bind 0.0.0.0, or nothing outside the container (Prometheus, the
# kubelet, clients) can reach them. The HEALTHCHECK below uses 127.0.0.1 and works either way.
COPY config.example.yaml /etc/wsgate/config.yaml

# Ports at or above 1024, so the unprivileged user needs no capabilities.
USER node
# 8080 WebSocket/HTTP, 8443 WebSocket over TLS, 8077 admin (metrics, health, reload).
EXPOSE 8080 8443 8077

# node:24-slim has no curl or wget; Node's own fetch does the check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8077/healthz').then((r)=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]

# wsgate drains on SIGTERM (close 1001 to every tunnel, bounded by timeouts.drain) and reloads its config
# on SIGHUP (`docker kill -s HUP <container>`) or when the mounted file changes. Node runs as PID 1 here,
# which is fine because the CLI installs its own signal handlers and, with `workers` > 1, the primary reaps
# its workers; use `docker run --init` if you want general zombie reaping as well. Docker waits 10 s after
# SIGTERM before it kills: give it shutdown.acceptDelay + timeouts.drain (30 s by default) and a little more,
# e.g. `docker run --stop-timeout 40` (or stop_grace_period in compose).
STOPSIGNAL SIGTERM
# V8 flags: see src/control/node-flags.ts (a small young generation keeps memory per connection low).
ENTRYPOINT ["node", "--max-semi-space-size=2", "dist/src/cli.js"]
# Arguments replace CMD, so say the file again: `docker run … wsgate --config /etc/wsgate/config.yaml --check`.
CMD ["--config", "/etc/wsgate/config.yaml"]
