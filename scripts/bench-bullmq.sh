#!/usr/bin/env bash
# BullMQ on the same Redis as `sentinel bench jobs`, for the ratios in docs/benchmarks.md.
# Installs bullmq from npm into scripts/bullmq/node_modules on first use (needs node and npm).
# Usage: bash scripts/bench-bullmq.sh [jobs] [concurrencies]   e.g. bash scripts/bench-bullmq.sh 20000 1,10,50
set -euo pipefail
cd "$(dirname "$0")/bullmq"
command -v node >/dev/null || { echo "bench-bullmq.sh: install node and npm (apt-get install nodejs npm)"; exit 1; }
[ -d node_modules/bullmq ] && [ -d node_modules/ioredis ] || npm install --no-audit --no-fund --silent
exec node drain.js "${SENTINEL_BENCH_REDIS_URL:-redis://127.0.0.1:6379}" "${1:-20000}" "${2:-1,10,50}"
