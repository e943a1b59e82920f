#!/usr/bin/env bash
# `make demo`: the example widget page on its own origin, the gateway allowing that
# origin (examples/widget/gateway.yaml), the sandbox behind it.
#
# Ports come from the environment: DEMO_PAGE_PORT (8090), GATEWAY_BIND (127.0.0.1:8080),
# GATEWAY_METRICS_BIND (127.0.0.1:9464), SANDBOX_BIND (127.0.0.1:8081).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh demo
page_port=${DEMO_PAGE_PORT:-8090}
gateway_bind=${GATEWAY_BIND:-127.0.0.1:8080}
metrics_bind=${GATEWAY_METRICS_BIND:-127.0.0.1:9464}
sandbox_bind=${SANDBOX_BIND:-127.0.0.1:8081}
page="http://127.0.0.1:$page_port"
export REUSELY_API_KEY=demo-api-key REUSELY_SECRET_KEY=demo-secret-key REUSELY_TENANT_ID=demo-tenant
export REUSELY_BASE_URL="http://$sandbox_bind" GATEWAY_WORKERS=1
unset GATEWAY_REDIS_URL GATEWAY_CONFIG

"$BIN/python" scripts/run_policy.py examples/widget/gateway.yaml "$tmp/gateway.yaml" \
  "$page" "http://localhost:$page_port" > /dev/null
start_sandbox "$sandbox_bind"
start_gateway "$tmp/gateway.yaml" "$gateway_bind" "$metrics_bind"
"$BIN/python" examples/widget/serve.py --bind 127.0.0.1 --port "$page_port" \
  --gateway "http://$gateway_bind" > "$tmp/page.log" 2>&1 &
pids+=($!)
page_pid=$!
wait_until_up "widget page" "$page/" "$tmp/page.log"
echo
echo "  open $page/ : the trade-in widget, talking to the gateway on http://$gateway_bind"
echo "  Logs: the gateway's below; the sandbox's and the page's in $tmp. Ctrl-C stops everything."
echo
show_gateway_log
wait "$page_pid"
