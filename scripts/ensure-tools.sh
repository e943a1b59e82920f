#!/usr/bin/env bash
# System tools the suite drives: Debian's Chromium (browser tests) and promtool
# (alert-rule tests, from the prometheus package). Installed when missing (root only).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${missing[*]} (apt-get install ${missing[*]}); the tests that need them fail" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
