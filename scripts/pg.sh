#!/usr/bin/env bash
# A throwaway PostgreSQL on loopback, in a temporary data directory (tests and benchmarks).
#
#   scripts/pg.sh start [DIR] [PORT]   initdb (if DIR has no cluster) + start; prints the URL
#                                      postgres://postgres@127.0.0.1:PORT/postgres as its last line
#   scripts/pg.sh stop DIR             fast shutdown (keeps DIR)
#   scripts/pg.sh kill DIR             immediate shutdown (like a crash)
#   scripts/pg.sh restart DIR          stop (fast) + start on the same port
#   scripts/pg.sh destroy DIR          stop + rm -rf DIR
#   scripts/pg.sh url DIR              prints the URL
#
# DIR defaults to a new mktemp -d. PORT defaults to a free port. Listens on 127.0.0.1 only,
# trust authentication (loopback, throwaway), unix socket inside DIR. Works as root on a fresh
# machine (initdb refuses root: the cluster belongs to the `postgres` user, created by the
# Debian `postgresql` package) and as an ordinary user. PG_FSYNC=off (tests) disables fsync;
# the default keeps fsync on with synchronous_commit=off (comparable to SQLite's WAL with
# synchronous=NORMAL). PG_MAX_CONNECTIONS (default 300).
set -euo pipefail

PGBIN=${PGBIN:-}
if [ -z "$PGBIN" ]; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && PGBIN=$d; done
fi
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql, or set PGBIN)" >&2
  exit 127
fi

cmd=${1:-}
dir=${2:-}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port)+"\n");s.close()})'
}

url() { echo "postgres://postgres@127.0.0.1:$(cat "$1/port")/postgres"; }

start() {
  local d=$1 port=$2
  if [ ! -f "$d/data/PG_VERSION" ]; then
    mkdir -p "$d"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$d"; chmod 0700 "$d"; fi
    as_pg "$PGBIN/initdb" -D "$d/data" -U postgres -A trust -E UTF8 --no-sync >"$d/initdb.log" 2>&1 || { cat "$d/initdb.log" >&2; exit 1; }
  fi
  [ -n "$port" ] || port=$(cat "$d/port" 2>/dev/null || free_port)
  echo "$port" >"$d/port"
  local fs="-c fsync=on -c synchronous_commit=off"
  [ "${PG_FSYNC:-on}" = off ] && fs="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$d -c max_connections=${PG_MAX_CONNECTIONS:-300} $fs" start >/dev/null
  url "$d"
}

case "$cmd" in
  start)
    if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/bootkey-pg.XXXXXX); fi
    start "$dir" "${3:-}"
    ;;
  stop) as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  kill) as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null ;;
  restart)
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    start "$dir" "$(cat "$dir/port")"
    ;;
  destroy)
    if [ -f "$dir/data/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
    ;;
  url) url "$dir" ;;
  *) echo "usage: scripts/pg.sh start [DIR] [PORT] | stop DIR | kill DIR | restart DIR | destroy DIR | url DIR" >&2; exit 2 ;;
esac
