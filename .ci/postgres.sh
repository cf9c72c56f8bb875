#!/usr/bin/env bash
# Install and start PostgreSQL on 127.0.0.1:5432 (password auth) with a database `charmlp`,
# for the multi-worker tests: postgresql://postgres:charmlp@127.0.0.1:5432/charmlp
# Debian/Ubuntu, as root (CI), no systemd needed. Safe to run again: it only starts what is down.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "postgres.sh: run as root (sudo bash .ci/postgres.sh)" >&2; exit 1; }
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  [ -n "${CHARMLP_APT_UPDATED:-}" ] || apt-get update -qq   # .ci/run updates once for all
  # policy-rc.d in containers may refuse to start services: we start the cluster ourselves.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$ver main" || pg_createcluster --port 5432 "$ver" main >/dev/null
port=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')
[ "$port" = 5432 ] || { echo "postgres.sh: cluster $ver/main uses port $port, not 5432" >&2; exit 1; }
pg_ctlcluster "$ver" main status >/dev/null 2>&1 || pg_ctlcluster "$ver" main start
for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "postgres.sh: server did not come up on 127.0.0.1:5432; its log:" >&2
  tail -20 "/var/log/postgresql/postgresql-$ver-main.log" >&2 || true
  exit 1
fi
su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'charmlp';\""
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='charmlp'\"" | grep -q 1 \
  || su postgres -c "createdb charmlp"
# Password auth over TCP, as the tests connect (Debian's pg_hba.conf: scram-sha-256 on 127.0.0.1).
PGPASSWORD=charmlp psql -h 127.0.0.1 -p 5432 -U postgres -d charmlp -tAc "SELECT 1" >/dev/null
echo "postgres: ready at postgresql://postgres:charmlp@127.0.0.1:5432/charmlp"
