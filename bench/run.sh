#!/usr/bin/env bash
# make bench: install what the benchmark needs if missing, then run it.
#   nginx and wrk from Debian (apt-get update once, then install);
#   the Python peer (fastapi-proxy-lib) in its own venv, bench/.venv-peer, and the
#   two floors in theirs, bench/.venv-floor-aiohttp and bench/.venv-floor-granian.
# Arguments are passed to bench/run.py (--quick, --targets ..., --no-write).
# `bash bench/run.sh --tools` only adds what the experiments need to the same
# venv (py-spy, aiohttp, httpx-aiohttp, and the gateway's own dependencies for
# bench/variants.py), then exits.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[bench] installing ${need_apt[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian may start a system nginx on install; the bench runs its own.
  if [ -f /run/nginx.pid ] && [[ " ${need_apt[*]} " == *" nginx "* ]]; then
    kill "$(cat /run/nginx.pid)" 2>/dev/null || true
  fi
fi
export PATH="$PATH:/usr/sbin"

# ensure_venv DIR IMPORTS PACKAGE...: a bench-only venv with PACKAGEs from PyPI,
# created or filled when `import IMPORTS` fails in it. None is part of the product.
ensure_venv() {
  local dir="$1" imports="$2"
  shift 2
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "import $imports" 2>/dev/null; then
    echo "[bench] creating bench/$(basename "$dir")"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  fi
}

peer="$here/.venv-peer"
# The Python peer: fastapi-proxy-lib under gunicorn with one uvicorn worker.
ensure_venv "$peer" "fastapi, fastapi_proxy_lib, uvicorn_worker, sniffio, gunicorn" \
  fastapi-proxy-lib fastapi uvicorn uvicorn-worker gunicorn sniffio uvloop httptools
# The floors (bench/floor_*.py): a minimal proxy on the gateway's own stack, and the
# same on granian + pyreqwest.
ensure_venv "$here/.venv-floor-aiohttp" "aiohttp, uvicorn_worker, uvloop, httptools, gunicorn" \
  gunicorn uvicorn uvicorn-worker uvloop httptools aiohttp
ensure_venv "$here/.venv-floor-granian" "granian, pyreqwest, uvloop" granian pyreqwest uvloop

if [ "${1:-}" = "--tools" ]; then
  echo "[bench] adding py-spy, aiohttp, httpx-aiohttp and the gateway's dependencies to bench/.venv-peer"
  "$peer/bin/pip" install -q --disable-pip-version-check \
    py-spy aiohttp httpx-aiohttp limits redis prometheus-client pyyaml
  exit 0
fi

if [ ! -x "$here/../.venv/bin/reusely-gateway" ]; then
  echo "[bench] note: .venv/bin/reusely-gateway not found; running nginx, the peer and the floors only" >&2
  set -- --targets nginx,peer,floor-aiohttp,floor-granian "$@"
fi

exec python3 "$here/run.py" "$@"
