#!/usr/bin/env bash
# A throwaway 2-node Ray cluster on 127.0.0.1 for tests and developers: a head (1 CPU) and a
# worker node (3 CPUs: a 2- or 3-CPU job can only run there), with Ray 2.60's token authentication, its own temp folders and ports.
#
#   scripts/ray_cluster.sh start DIR    starts both nodes (state in DIR), prints the address
#   scripts/ray_cluster.sh worker DIR   (re)starts the worker node of the cluster in DIR
#   scripts/ray_cluster.sh stop DIR     stops the nodes started in DIR (by their PIDs), removes DIR
#   scripts/ray_cluster.sh run CMD...   start in a temporary folder, run CMD with LAKE_TEST_RAY set
#                                       to the address, LAKE_TEST_RAY_DIR to the folder and
#                                       RAY_AUTH_MODE/RAY_AUTH_TOKEN_PATH to its token, stop it
#                                       whatever happens; CMD's status
#
# DIR/token holds the cluster's token; a client needs RAY_AUTH_MODE=token and
# RAY_AUTH_TOKEN_PATH=DIR/token (or lake.toml [batch] ray_auth_token_file). DIR/worker.env
# names the worker node's raylet port, so a test can find and kill that raylet.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

ray_bin() {
  if [ -x "$REPO/.venv/bin/ray" ]; then echo "$REPO/.venv/bin/ray"; else command -v ray; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Ray's processes of one node: every process whose command line names the node's temp folder.
node_pids() {
  local tmp=$1
  grep -l -a -F -- "$tmp" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | sort -n || true
}

common_env() {
  local dir=$1
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$dir/token"
  export RAY_USAGE_STATS_ENABLED=0 RAY_DISABLE_IMPORT_WARNING=1
}

start_worker() {
  local dir=$1 ray port nm om min
  dir=$(cd "$dir" && pwd)
  common_env "$dir"
  ray=$(ray_bin)
  # shellcheck disable=SC1091
  . "$dir/head.env"
  nm=$(free_port)
  om=$(free_port)
  min=$((20000 + RANDOM % 20000))
  rm -rf "$dir/worker"
  mkdir -p "$dir/worker"
  "$ray" start --address="127.0.0.1:$HEAD_PORT" --node-ip-address=127.0.0.1 --num-cpus=3 \
    --temp-dir="$dir/worker" --node-manager-port="$nm" --object-manager-port="$om" \
    --min-worker-port="$min" --max-worker-port="$((min + 200))" --disable-usage-stats \
    >"$dir/worker.log" 2>&1 || { cat "$dir/worker.log" >&2; return 1; }
  echo "WORKER_RAYLET_PORT=$nm" >"$dir/worker.env"
}

start() {
  local dir=$1 ray port gcs client dash nm om min
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  ray=$(ray_bin) || { echo "ray_cluster: no ray command" >&2; return 2; }
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/token"
  chmod 600 "$dir/token"
  common_env "$dir"
  port=$(free_port)
  client=$(free_port)
  nm=$(free_port)
  om=$(free_port)
  min=$((20000 + RANDOM % 20000))
  mkdir -p "$dir/head"
  "$ray" start --head --node-ip-address=127.0.0.1 --port="$port" --num-cpus=1 \
    --temp-dir="$dir/head" --ray-client-server-port="$client" --include-dashboard=false \
    --node-manager-port="$nm" --object-manager-port="$om" \
    --min-worker-port="$min" --max-worker-port="$((min + 200))" --disable-usage-stats \
    >"$dir/head.log" 2>&1 || { cat "$dir/head.log" >&2; return 1; }
  echo "HEAD_PORT=$port" >"$dir/head.env"
  start_worker "$dir"
  echo "127.0.0.1:$port" | tee "$dir/address"
}

stop() {
  local dir=$1 pid node
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  for node in worker head; do
    for pid in $(node_pids "$dir/$node"); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  sleep 1
  for node in worker head; do
    for pid in $(node_pids "$dir/$node"); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  rm -rf "$dir"
}

run() {
  local address status=0 t0=$SECONDS
  RAY_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lakeward-ray.XXXXXX")
  trap 'stop "$RAY_RUN_DIR"' EXIT
  if address=$(start "$RAY_RUN_DIR"); then
    echo "ray_cluster: 2-node Ray at $address (started in $((SECONDS - t0)) s)" >&2
    export LAKE_TEST_RAY="$address" LAKE_TEST_RAY_DIR="$RAY_RUN_DIR"
    # Ray reads its authentication mode when first imported: the clients' environment.
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RAY_RUN_DIR/token"
  else
    echo "ray_cluster: no Ray cluster; the cluster tests will be skipped" >&2
  fi
  "$@" || status=$?
  return $status
}

cmd=${1:-}
shift || true
case "$cmd" in
  start) start "${1:?usage: ray_cluster.sh start DIR}" ;;
  worker) start_worker "${1:?usage: ray_cluster.sh worker DIR}" ;;
  stop) stop "${1:?usage: ray_cluster.sh stop DIR}" ;;
  run) run "$@" ;;
  *)
    echo "usage: ray_cluster.sh start DIR | worker DIR | stop DIR | run CMD..." >&2
    exit 2
    ;;
esac
