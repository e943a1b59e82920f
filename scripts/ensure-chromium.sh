#!/usr/bin/env bash
# The browser tests drive Debian's Chromium; install it when missing (root only).
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "Chromium is missing: apt-get install chromium (the browser tests fail without it)" >&2
  exit 1
fi
echo "installing chromium" >&2
DEBIAN_FRONTEND=noninteractive apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
