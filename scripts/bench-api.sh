#!/usr/bin/env bash
# API load benchmark on the distributed mode (api-gateway on PostgreSQL + Redis), loaded by wrk from a
# second process on loopback: enqueue rate/latency and GET-by-id rate/latency. Figures go to
# docs/benchmarks.md. Needs release binaries (`cargo build --release --workspace --bins`) and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

server=${SENTINEL_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
duration=${BENCH_SECONDS:-20}
connections=${BENCH_CONNECTIONS:-48}
db="sentinel_bench_$$"
prefix="bench$$"
token="bench-token-$(date +%s)-0123456789"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

command -v wrk >/dev/null || { echo "bench-api.sh: install wrk (apt-get install wrk)"; exit 1; }
psql -q "$server" -c "CREATE DATABASE $db"
export SENTINEL_DATABASE__URL="${server%/*}/$db"
export SENTINEL_BUS__BACKEND=redis
export SENTINEL_BUS__REDIS_URL=${SENTINEL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
export SENTINEL_BUS__PREFIX=$prefix
export SENTINEL_HTTP__API_TOKEN=$token
export SENTINEL_TELEMETRY__LOG_LEVEL=warn
export SENTINEL_TELEMETRY__LOG_FORMAT=json
# The gateway stores credentials, so it needs a master key: a throwaway one in a private file.
keyfile=$(mktemp)
chmod 600 "$keyfile"
target/release/sentinel admin gen-master-key >"$keyfile"
export SENTINEL_SECRETS__MASTER_KEY_FILE=$keyfile
target/release/sentinel migrate >/dev/null
SENTINEL_HTTP__LISTEN="127.0.0.1:$port" target/release/api-gateway >/tmp/bench-gateway.log 2>&1 &
gateway=$!
cleanup() {
  kill "$gateway" 2>/dev/null || true
  wait "$gateway" 2>/dev/null || true
  psql -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -f "$keyfile"
  redis-cli -u "$SENTINEL_BUS__REDIS_URL" --scan --pattern "{$prefix*" | xargs -r redis-cli -u "$SENTINEL_BUS__REDIS_URL" del >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('$base/ready', timeout=1)" 2>/dev/null && break
  sleep 0.2
done

echo "== enqueue: POST /api/v1/jobs, $connections connections, ${duration}s =="
wrk -t2 -c"$connections" -d"${duration}s" --latency -s scripts/wrk-enqueue.lua -H "Authorization: Bearer $token" "$base/api/v1/jobs"

id=$(python3 - "$base" "$token" <<'PY'
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
req = urllib.request.Request(base + "/api/v1/jobs", data=b'{"kind":"demo.sleep","payload":{"seconds":0}}',
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["id"])
PY
)
echo "== get by id: GET /api/v1/jobs/$id, $connections connections, ${duration}s =="
wrk -t2 -c"$connections" -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/v1/jobs/$id"
