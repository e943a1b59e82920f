#!/usr/bin/env bash
# `make demo`: the widget page on http://127.0.0.1:8090 (its own origin), the gateway
# on :8080 allowing that origin (examples/widget/gateway.yaml), the sandbox on :8081.
set -euo pipefail
cd "$(dirname "$0")/.."
export REUSELY_API_KEY=demo-api-key REUSELY_SECRET_KEY=demo-secret-key REUSELY_TENANT_ID=demo-tenant
unset GATEWAY_REDIS_URL
trap 'kill 0' EXIT INT TERM
.venv/bin/reusely-gateway sandbox --bind 127.0.0.1:8081 > /tmp/reusely-sandbox.log 2>&1 &
REUSELY_BASE_URL=http://127.0.0.1:8081 .venv/bin/reusely-gateway serve --config examples/widget/gateway.yaml \
  --bind 127.0.0.1:8080 --metrics-bind 127.0.0.1:9464 --workers 1 &
echo "open http://127.0.0.1:8090/ (Ctrl-C stops everything)"
.venv/bin/python examples/widget/serve.py --bind 127.0.0.1 --port 8090 --gateway http://127.0.0.1:8080
