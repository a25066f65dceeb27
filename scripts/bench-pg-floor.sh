#!/usr/bin/env bash
# The floor of the job path on this machine's PostgreSQL: the database writes a job needs (start with
# its event, optionally a log line with its event, outcome with its event: the statements of a round,
# in ideal batches of 50 jobs by default, prepared) and nothing else — no Redis, no worker, no Sentinel process.
# Whatever the job path does, it cannot drain faster than this (docs/benchmarks.md, "The floor").
# Needs pgbench (postgresql-contrib / postgresql-client) and a release build of `sentinel` (for the schema).
# Usage: bash scripts/bench-pg-floor.sh [blocks of jobs per run] [clients]   e.g. 3600 1,2,4
# BLOCK=n sets the jobs per statement (default 50); BLOCK=1 is one job at a time, the floor at concurrency 1.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${SENTINEL_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
blocks=${1:-3600}
clients=${2:-1,2,4}
block=${BLOCK:-50}
# Sentinel uses no TLS to a PostgreSQL on loopback unless its URL asks (crates/sentinel-db); nor do we.
case $url in *@127.*|*@localhost*|*@\[::1\]*) export PGSSLMODE=${PGSSLMODE:-disable} ;; esac
bin=target/release/sentinel
[ -x "$bin" ] || { echo "bench-pg-floor.sh: build it first: cargo build --release -p sentinel"; exit 1; }
command -v pgbench >/dev/null || { echo "bench-pg-floor.sh: install pgbench (apt-get install postgresql-contrib)"; exit 1; }
db="sentinel_floor_$$"
base=${url%/*}
work=$(mktemp -d)
trap 'psql "$url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; rm -rf "$work"' EXIT
psql "$url" -qc "CREATE DATABASE $db"
SENTINEL_DATABASE__URL="$base/$db" "$bin" migrate >/dev/null 2>&1

cat >"$work/seed.sql" <<SQL
TRUNCATE jobs, job_events;
DROP SEQUENCE IF EXISTS blk; CREATE SEQUENCE blk;
CREATE OR REPLACE FUNCTION blk_ids(b bigint) RETURNS uuid[] LANGUAGE sql IMMUTABLE AS
\$\$ SELECT array(SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid FROM generate_series(b*$block, b*$block+$block-1) g) \$\$;
INSERT INTO jobs (id, kind, queue, priority, payload, state, attempt, max_attempts, backoff_base_ms, backoff_max_ms,
  epoch, event_seq, cancel_requested, published, run_at, created_at, updated_at, org_id)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid, 'demo.sleep', 'default', 'normal',
  '{"seconds":0}', 'queued', 1, 3, 1000, 60000, 0, 1, false, true, now(), now(), now(), gen_random_uuid()
FROM generate_series($block, $block * ($blocks + 1)) g;
INSERT INTO job_events (job_id, seq, event_type, data, at) SELECT id, 1, 'queued', '{"type":"queued"}', now() FROM jobs;
VACUUM ANALYZE jobs; VACUUM ANALYZE job_events; CHECKPOINT;
SQL
start="WITH s AS (UPDATE jobs AS j SET state = 'running', epoch = j.epoch + 1, event_seq = j.event_seq + 1, started_at = now(), updated_at = now() WHERE j.id = ANY(blk_ids(:b)) AND j.state = 'queued' RETURNING j.*), e AS (INSERT INTO job_events (job_id, seq, event_type, data, at) SELECT s.id, s.event_seq, 'started', json_build_object('type', 'started', 'attempt', s.attempt), now() FROM s RETURNING id), c AS (SELECT set_config('synchronous_commit', 'off', true)) SELECT count(*) FROM s, c;"
log="WITH a AS (UPDATE jobs AS j SET event_seq = j.event_seq + 1 WHERE j.id = ANY(blk_ids(:b)) AND j.state = 'running' RETURNING j.*), e AS (INSERT INTO job_events (job_id, seq, event_type, data, at) SELECT a.id, a.event_seq, 'log', json_build_object('type', 'log', 'line', 'sleeping 0 s'), now() FROM a RETURNING id), c AS (SELECT set_config('synchronous_commit', 'off', true)) SELECT count(*) FROM a, c;"
outcome="WITH f AS (UPDATE jobs AS j SET state = 'succeeded', result = '{\"slept_seconds\":0}', event_seq = j.event_seq + 1, finished_at = now(), updated_at = now() WHERE j.id = ANY(blk_ids(:b)) AND j.state = 'running' RETURNING j.*), e AS (INSERT INTO job_events (job_id, seq, event_type, data, at) SELECT f.id, f.event_seq, 'finished', json_build_object('type', 'finished', 'state', 'succeeded'), now() FROM f RETURNING id) SELECT count(*) FROM f;"
printf '%s\n%s\n' 'SELECT nextval('"'"'blk'"'"') AS b \gset' "$start" >"$work/start_only.sql"
printf '%s\n%s\n%s\n' 'SELECT nextval('"'"'blk'"'"') AS b \gset' "$start" "$outcome" >"$work/minimal.sql"
printf '%s\n%s\n%s\n%s\n' 'SELECT nextval('"'"'blk'"'"') AS b \gset' "$start" "$log" "$outcome" >"$work/with_log.sql"

echo "| writes per job | connections | jobs/s |"
echo "|---|---:|---:|"
for script in start_only minimal with_log; do
  for c in ${clients//,/ }; do
    psql "$base/$db" -qf "$work/seed.sql" >/dev/null 2>&1
    tps=$(pgbench "$base/$db" -n -M prepared -c "$c" -j "$c" -t $((blocks / c)) -f "$work/$script.sql" 2>/dev/null |
      awk '/^tps/ {print $3}')
    ended=$([ "$script" = start_only ] && echo running || echo succeeded)
    done_jobs=$(psql "$base/$db" -Atc "SELECT count(*) FROM jobs WHERE state = '$ended'")
    [ "$done_jobs" -ge $((blocks / c * c * block)) ] || { echo "only $done_jobs jobs finished"; exit 1; }
    case $script in
      start_only) label="start only" ;;
      minimal) label="start + outcome" ;;
      *) label="start + log line + outcome" ;;
    esac
    printf '| %s | %s | %.0f |\n' "$label" "$c" "$(echo "$tps * $block" | bc -l)"
  done
done
