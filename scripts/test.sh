#!/usr/bin/env bash
# `make test`'s suite. Which Redis it empties (FLUSHDB on db 9, before and after each
# test that uses it):
#   TEST_REDIS_URL set    that database, nothing else; no Redis is started.
#   TEST_REDIS_URL unset  a throwaway redis-server on a free loopback port, started
#                         here and stopped when the suite ends; no Redis of yours,
#                         and not 6379 (docker compose's), is touched.
# Some tests also start private redis-server processes of their own on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
if [ -z "${TEST_REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "redis-server is missing: apt-get install redis-server (or set TEST_REDIS_URL)" >&2
      exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/reusely-test-redis.XXXXXX")
  port=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize no > "$dir/redis.log" 2>&1 &
  redis_pid=$!
  trap 'kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
  pong() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 && timeout 1 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
  for _ in $(seq 100); do pong && break; sleep 0.05; done
  pong || { echo "the throwaway redis-server did not answer:" >&2; cat "$dir/redis.log" >&2; exit 1; }
  export TEST_REDIS_URL="redis://127.0.0.1:$port/9"
  echo "make test: a throwaway Redis on 127.0.0.1:$port for this run (set TEST_REDIS_URL to use another)"
fi
"$BIN/python" -m pytest "$@"
