# Sentinel task runner (https://just.systems). `pip install rust-just` if you do not have it.

# Run the embedded all-in-one Sentinel (SQLite + in-process bus) on 127.0.0.1:8080.
up:
    cargo run --release -p sentinel -- up

# Run the embedded Sentinel in debug mode with pretty logs.
dev:
    SENTINEL_TELEMETRY__LOG_FORMAT=pretty cargo run -p sentinel -- up

# The whole test suite (installs/starts PostgreSQL and Redis when missing).
test:
    bash scripts/test.sh

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply migrations to SENTINEL_DATABASE__URL.
migrate:
    cargo run -p sentinel -- migrate

# Bus benchmark on the local Redis (figures in docs/benchmarks.md).
bench:
    cargo run --release -p sentinel -- bench bus

# The whole job path (PostgreSQL + Redis + a worker process), then BullMQ on the same Redis.
bench-jobs:
    cargo build --release --workspace --bins
    target/release/sentinel bench jobs --jobs 20000 --concurrency 1,10,50
    bash scripts/bench-bullmq.sh 20000 1,10,50

# Inventory: a 10,000-row CSV import and 50 concurrent reservations, on PostgreSQL then SQLite.
bench-inventory:
    cargo build --release -p sentinel
    target/release/sentinel bench inventory --store postgres
    target/release/sentinel bench inventory --store sqlite

# Provisioning: a run on 20 sshd hosts against ansible-playbook by hand, SSE latency, a chatty
# playbook, worker RSS (figures in docs/benchmarks.md). Needs openssh-server and target/ansible-venv.
bench-provision:
    cargo build -p sentinel
    python3 scripts/bench_provision.py
