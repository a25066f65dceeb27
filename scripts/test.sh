#!/usr/bin/env bash
# Runs Sentinel's whole test suite (fmt, clippy, every test, the API fuzz) against real PostgreSQL and Redis.
# On a fresh Debian machine it installs and starts them from Debian packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

export SENTINEL_TEST_DATABASE_URL="${SENTINEL_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export SENTINEL_TEST_REDIS_URL="${SENTINEL_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

# Redis: the tests also start private redis-server processes (restart tests), so the binary is needed.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: installing redis-server"
  apt_install redis-server
fi
if ! redis_up; then
  echo "test.sh: starting redis-server on 127.0.0.1:6379"
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi

# Python runs the API fuzzer (schemathesis, installed from PyPI into target/).
if ! command -v python3 >/dev/null 2>&1; then
  echo "test.sh: installing python3"
  apt_install python3 python3-venv
fi

# ssh-keygen makes the SSH keys the secret-store tests upload (and, next, the provisioning hosts' keys).
if ! command -v ssh-keygen >/dev/null 2>&1; then
  echo "test.sh: installing openssh-client"
  apt_install openssh-client
fi

# The provisioning tests run real sshd instances on loopback addresses (never as a service) and a
# pinned ansible-core from PyPI in a virtualenv under target/.
if [ ! -x /usr/sbin/sshd ]; then
  echo "test.sh: installing openssh-server (the service stays disabled)"
  apt_install --no-install-recommends openssh-server
fi
ansible_venv="${CARGO_TARGET_DIR:-target}/ansible-venv"
if [ ! -x "$ansible_venv/bin/ansible-playbook" ]; then
  echo "test.sh: installing ansible-core 2.19.14 into $ansible_venv"
  python3 -m venv "$ansible_venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$ansible_venv"; }
  "$ansible_venv/bin/pip" install -q "ansible-core==2.19.14"
fi
export SENTINEL_TEST_ANSIBLE_PLAYBOOK="${SENTINEL_TEST_ANSIBLE_PLAYBOOK:-$(cd "$ansible_venv/bin" && pwd)/ansible-playbook}"

# PostgreSQL.
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "test.sh: installing postgresql"
  apt_install postgresql
  fresh_pg=1
fi
if ! pg_up; then
  echo "test.sh: starting postgresql"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi
if [ "${fresh_pg:-}" = 1 ]; then
  # A fresh cluster only allows peer login; give the test role the password the test URL uses.
  $SUDO -u postgres psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 \
    || su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
fi
for _ in $(seq 1 30); do pg_up && redis_up && break; sleep 1; done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The black-box tests run every service binary; `cargo test` alone builds only test harnesses for
# packages without integration tests, so build the real binaries first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
bash scripts/fuzz-api.sh
