#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379; start one (installing it if missing).
set -euo pipefail
answers() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 1 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if answers; then exit 0; fi
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" != 0 ]; then echo "redis-server is missing: apt-get install redis-server" >&2; exit 1; fi
  echo "installing redis-server" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
fi
redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save "" --appendonly no
for _ in $(seq 50); do answers && exit 0; sleep 0.1; done
echo "redis-server did not answer on 127.0.0.1:6379" >&2
exit 1
