#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for tests, benchmarks and developers.
#
#   scripts/pg_cluster.sh start DIR   initdb + pg_ctl start in DIR (created), prints the admin URL
#   scripts/pg_cluster.sh stop DIR    stops the server started in DIR (by its PID) and removes DIR
#   scripts/pg_cluster.sh run CMD...  start in a temporary folder, run CMD with LAKE_TEST_PG set
#                                     to the admin URL, stop it whatever happens; CMD's status
#
# Installs Debian's `postgresql` when no server binaries are found (as root, apt-get). The server
# runs as the `postgres` user when started by root (PostgreSQL refuses to run as root), listens on
# 127.0.0.1 only, on a free port, with trust authentication: never point it at real data.
# `run` without any way to get PostgreSQL prints why and runs CMD without LAKE_TEST_PG.
set -euo pipefail

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] \
    && { pg_config --bindir; return 0; }
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

install_postgres() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  echo "pg_cluster: installing postgresql (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >/dev/null
}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 bindir port
  bindir=$(find_bindir) || { install_postgres && bindir=$(find_bindir); } || {
    echo "pg_cluster: no PostgreSQL server binaries and no way to install them" >&2
    return 2
  }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_server_user "$bindir/initdb" -D "$dir/data" -U lake --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  port=$(free_port)
  # Throwaway cluster: no fsync; synchronous_commit=off is the durability class of the SQLite
  # default (WAL, synchronous=NORMAL): a client that dies loses nothing it was told committed.
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off \
     -c synchronous_commit=off -c full_page_writes=off" >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  echo "$bindir" >"$dir/bindir"
  echo "postgresql://lake@127.0.0.1:$port/postgres" | tee "$dir/url"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/data/postmaster.pid" ] || { rm -rf "$dir"; return 0; }
  pid=$(head -1 "$dir/data/postmaster.pid")
  kill -INT "$pid" 2>/dev/null || true # fast shutdown: disconnects clients, then exits
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

run() {
  local url status=0 t0=$SECONDS
  PG_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lakeward-pg.XXXXXX")
  trap 'stop "$PG_RUN_DIR"' EXIT
  if url=$(start "$PG_RUN_DIR"); then
    echo "pg_cluster: PostgreSQL at $url (started in $((SECONDS - t0)) s)" >&2
    export LAKE_TEST_PG="$url"
  else
    echo "pg_cluster: PostgreSQL unavailable; the PostgreSQL tests will be skipped" >&2
  fi
  "$@" || status=$?
  return $status
}

cmd=${1:-}
shift || true
case "$cmd" in
  start) start "${1:?usage: pg_cluster.sh start DIR}" ;;
  stop) stop "${1:?usage: pg_cluster.sh stop DIR}" ;;
  run) run "$@" ;;
  *)
    echo "usage: pg_cluster.sh start DIR | stop DIR | run CMD..." >&2
    exit 2
    ;;
esac
