#!/usr/bin/env bash
# Runs every test of the project on a Debian machine: installs the real services the tests use
# (containerd, runc, CNI plugins, iptables, etcd, PostgreSQL, MariaDB, static busybox) when they
# are missing, starts the database servers on loopback, then runs the whole cargo test suite.
# Needs root (package installs, containers, iptables). Usage: bash tests/run.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(containerd runc containernetworking-plugins iptables busybox-static etcd-server etcd-client
          postgresql mariadb-server curl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Python kubernetes client, for the client-compatibility tests.
python3 -c 'import kubernetes' 2>/dev/null || python3 -m pip install -q kubernetes==37.0.2

run_dir=$(mktemp -d /tmp/k3s-test-services.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap cleanup EXIT

# etcd 3 on loopback, private data dir.
etcd --data-dir "$run_dir/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  >"$run_dir/etcd.log" 2>&1 &
pids+=($!)
export K3S_TEST_ETCD=http://127.0.0.1:2379

# PostgreSQL: the Debian cluster, a login role and a database for the tests.
pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start 2>/dev/null || true
for _ in $(seq 30); do su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break; sleep 1; done
su postgres -c "psql -qc \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='k3s') THEN CREATE ROLE k3s LOGIN PASSWORD 'k3s' CREATEDB; END IF; END\\\$\\\$;\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='k3s_test'\"" | grep -q 1 ||
  su postgres -c "psql -qc 'CREATE DATABASE k3s_test OWNER k3s'"
export K3S_TEST_POSTGRES=postgres://k3s:k3s@127.0.0.1:5432/k3s_test

# MariaDB refuses to run as root; run it as mysql.
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! mysql -uroot -e 'select 1' >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 30); do mysql -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi
mysql -uroot -e "CREATE DATABASE IF NOT EXISTS k3s_test; CREATE USER IF NOT EXISTS 'k3s'@'127.0.0.1' IDENTIFIED BY 'k3s'; GRANT ALL ON *.* TO 'k3s'@'127.0.0.1'; FLUSH PRIVILEGES;"
export K3S_TEST_MYSQL='mysql://k3s:k3s@tcp(127.0.0.1:3306)/k3s_test'

for _ in $(seq 30); do curl -sf http://127.0.0.1:2379/health >/dev/null && break; sleep 1; done

cargo test --workspace --locked "$@"
