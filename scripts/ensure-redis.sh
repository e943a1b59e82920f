#!/usr/bin/env bash
# `make redis` (used by `make bench`): make sure a Redis answers on 127.0.0.1:6379;
# start one if none does (installing it if missing). That server keeps running after
# this script: stop it with `redis-cli -p 6379 shutdown nosave` (docker compose's
# Redis wants 6379 too). With TEST_REDIS_URL set this does nothing: that Redis is yours.
set -euo pipefail
if [ -n "${TEST_REDIS_URL:-}" ]; then exit 0; fi
answers() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 1 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if answers; then exit 0; fi
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" != 0 ]; then echo "redis-server is missing: apt-get install redis-server" >&2; exit 1; fi
  echo "installing redis-server" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
fi
redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save "" --appendonly no
for _ in $(seq 50); do
  if answers; then
    echo "started redis-server on 127.0.0.1:6379; it keeps running (redis-cli -p 6379 shutdown nosave stops it)" >&2
    exit 0
  fi
  sleep 0.1
done
echo "redis-server did not answer on 127.0.0.1:6379" >&2
exit 1
