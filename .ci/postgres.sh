#!/usr/bin/env bash
# Install and start PostgreSQL on 127.0.0.1:5432 with a database `charmlp` for the tests.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q . || pg_createcluster "$ver" main >/dev/null
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'charmlp';\""
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='charmlp'\"" | grep -q 1 \
  || su postgres -c "createdb charmlp"
echo "postgres: ready at postgresql://postgres:charmlp@127.0.0.1:5432/charmlp"
