# Imagine: the Discord bot with its Stable Diffusion engine, on an NVIDIA GPU. One image for every role: the bot
# (CMD `imagine-bot start`), and with the Redis backend the image workers (`imagine-bot worker --device N`).
#
#   docker compose up -d                 (see docker-compose.yml and docs/operations.md)
#   docker build -t imagine-bot .        (the image alone)
#
# Two stages: `build` (Debian + Node 20 + compilers) installs, compiles and fetches the CUDA provider; the runtime
# stage is NVIDIA's CUDA 12 + cuDNN 9 runtime (what onnxruntime-node 1.30's CUDA provider is built against) with only
# the Node binary copied in, so no Node package repository is needed.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${NODE_IMAGE} AS build
# Compilers for native modules without a matching prebuilt binary (sqlite3 falls back to node-gyp).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Node 20's image ships npm 10, which does not know package.json's `allowScripts` (where onnxruntime-node's install
# script is denied): the variable makes that script skip its CUDA download from NuGet instead.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY commands ./commands
COPY config ./config
RUN npm run build \
 && chmod +x dist/src/cli/main.js
# The CUDA execution provider's libraries come from onnxruntime-node's own installer (skipped during `npm ci`). No GPU at build time, so the load check is left to `imagine-bot doctor` in the running container.
RUN node dist/src/cli/main.js setup cuda --skip-check
RUN npm prune --omit=dev --no-audit --no-fund

FROM ${CUDA_IMAGE} AS runtime
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config
COPY --from=build /app/commands ./commands
RUN ln -s /app/dist/src/cli/main.js /usr/local/bin/imagine-bot \
 && groupadd --system --gid 10001 imagine \
 && useradd --system --uid 10001 --gid imagine --home-dir /data --shell /usr/sbin/nologin imagine \
 && mkdir -p /data /models \
 && chown imagine:imagine /data /models

# State (SQLite, heartbeat) in /data; models in the standard Hugging Face cache under /models/hub, so
# `imagine-bot models pull` run in the container (or any Hugging Face tool on the host) fills the same volume.
ENV NODE_ENV=production \
    IMAGINE_DATA_DIR=/data \
    HF_HOME=/models \
    IMAGINE_PROVIDER=auto
VOLUME ["/data", "/models"]
USER imagine

# Fast checks only (configuration, model files present, /data writable, KEYV_URL reachable, and the heartbeat the
# bot writes to /data/heartbeat every 30 s being fresh): no model loading, no network beyond KEYV_URL.
HEALTHCHECK --interval=60s --timeout=20s --start-period=180s --retries=3 \
  CMD ["imagine-bot", "doctor", "--quick"]

# SIGTERM (docker stop) lets the bot stop taking jobs and finish the running one: give it time (stop_grace_period).
STOPSIGNAL SIGTERM
# A worker container overrides this: `imagine-bot worker --device 0` (docker-compose.yml).
CMD ["imagine-bot", "start"]
