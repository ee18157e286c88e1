#!/usr/bin/env bash
# Make sure what the test suite needs is on this machine and running: PostgreSQL and Redis on
# loopback, and Debian's Chromium for the browser tests. Installs with apt-get what is missing.
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL
if ! command -v pg_isready >/dev/null 2>&1 || ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
    installed_pg=1
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ "${installed_pg:-}" = 1 ]; then
    hba=/etc/postgresql/$version/main/pg_hba.conf
    as_root sed -i -E 's/^(local|host)(\s+all\s+all\s+.*)\s(peer|md5|scram-sha-256)$/\1\2 trust/' "$hba"
    as_root sed -i -E 's/^(local\s+all\s+postgres\s+)peer$/\1trust/' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432
fi

# Redis
if ! command -v redis-cli >/dev/null 2>&1 || ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null 2>&1 || { log "installing Redis"; apt_install redis-server; }
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi

# PgBouncer: `make test-pgbouncer` starts a private one in front of PostgreSQL (not the service).
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  log "installing PgBouncer"
  apt_install pgbouncer
fi

# Chromium for Playwright (it cannot download its own browser here).
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium"
  apt_install chromium
fi

# Node.js and npm run the official JavaScript clients against the hub.
if ! command -v npm >/dev/null 2>&1; then
  log "installing Node.js"
  apt_install nodejs npm
fi
log "PostgreSQL, Redis, PgBouncer, Chromium and Node.js are ready"
