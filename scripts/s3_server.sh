#!/usr/bin/env bash
# A throwaway S3 API server on 127.0.0.1 for tests, benchmarks and developers: the standalone
# server of moto[server] (PyPI), which enforces conditional PUT (delta-rs's safe concurrent
# commits) and stores multipart uploads intact. Its data lives in memory and dies with it.
#
#   scripts/s3_server.sh start DIR   starts it (its PID, port and log in DIR), prints its URL
#   scripts/s3_server.sh stop DIR    stops the server started in DIR (by its PID), removes DIR
#   scripts/s3_server.sh run CMD...  start in a temporary folder, run CMD with LAKE_TEST_S3 set
#                                    to the server's URL, stop it whatever happens; CMD's status
#
# The Python that runs it: $S3_PYTHON, else .venv/bin/python, else python3 (`moto[server]` is
# installed with pip when missing). Any credentials work: it checks none. Never put real data
# in it. `run` without a server prints why and runs CMD without LAKE_TEST_S3.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

python_bin() {
  if [ -n "${S3_PYTHON:-}" ]; then echo "$S3_PYTHON"; elif [ -x "$REPO/.venv/bin/python" ]; then
    echo "$REPO/.venv/bin/python"
  else command -v python3; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 py port pid
  py=$(python_bin)
  if ! "$py" -c 'import moto.server' 2>/dev/null; then
    echo "s3_server: installing moto[server]" >&2
    "$py" -m pip install -q 'moto[server]>=5' >&2 || return 2
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  port=$(free_port)
  # setsid: its own process group, so stop ends the server and nothing else.
  setsid "$py" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
  for _ in $(seq 1 150); do
    if "$py" - "$port" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
EOF
      echo "http://127.0.0.1:$port" | tee "$dir/url"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$dir/server.log" >&2
  stop "$dir"
  return 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || { rm -rf "$dir"; return 0; }
  pid=$(cat "$dir/pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

run() {
  local url status=0 t0=$SECONDS
  S3_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lakeward-s3.XXXXXX")
  trap 'stop "$S3_RUN_DIR"' EXIT
  if url=$(start "$S3_RUN_DIR"); then
    echo "s3_server: S3 API at $url (started in $((SECONDS - t0)) s)" >&2
    export LAKE_TEST_S3="$url"
  else
    echo "s3_server: no S3 API server; the object-store tests will be skipped" >&2
  fi
  "$@" || status=$?
  return $status
}

cmd=${1:-}
shift || true
case "$cmd" in
  start) start "${1:?usage: s3_server.sh start DIR}" ;;
  stop) stop "${1:?usage: s3_server.sh stop DIR}" ;;
  run) run "$@" ;;
  *)
    echo "usage: s3_server.sh start DIR | stop DIR | run CMD..." >&2
    exit 2
    ;;
esac
