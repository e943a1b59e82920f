#!/usr/bin/env bash
# `make run`: the sandbox on :8081, the gateway on :8080 (metrics :9464) in front of it.
set -euo pipefail
cd "$(dirname "$0")/.."
export REUSELY_API_KEY=sandbox-api-key REUSELY_SECRET_KEY=sandbox-secret-key REUSELY_TENANT_ID=sandbox-tenant
export REUSELY_BASE_URL=http://127.0.0.1:8081 GATEWAY_WORKERS=${GATEWAY_WORKERS:-2}
unset GATEWAY_REDIS_URL
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
.venv/bin/reusely-gateway sandbox --bind 127.0.0.1:8081 > /tmp/reusely-sandbox.log 2>&1 &
pids+=($!)
.venv/bin/reusely-gateway serve --config config/gateway.yaml --bind 127.0.0.1:8080 --metrics-bind 127.0.0.1:9464 &
pids+=($!)
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "the gateway did not start (is :8080 or :9464 taken?)" >&2; exit 1; }
  sleep 0.1
done
cat <<'MSG'

  reusely-gateway is running on http://127.0.0.1:8080 in front of the sandbox (http://127.0.0.1:8081).
  Limits are in process memory here; set GATEWAY_REDIS_URL for shared counts.  Ctrl-C stops both.

  # catalog read (public route; the gateway adds x-api-key and x-tenant-id)
  curl -s http://127.0.0.1:8080/api/v2/public/catalog/categories

  # mail-in checkout; the 6th for one email within an hour gets 429 from the gateway
  curl -s -i -X POST http://127.0.0.1:8080/api/v3/public/offer/mail-in \
    -H 'content-type: application/json' \
    -d '{"email":"shopper@example.com","first_name":"Ada","last_name":"Lovelace","payout_method":"paypal","offer_detail":[{"product_id":1,"condition_id":2}]}'

  # an internal route without a token: 401 (mint one with `.venv/bin/reusely-gateway token new`)
  curl -s -i http://127.0.0.1:8080/api/v2/admin/orders

  # health, readiness, metrics
  curl -s http://127.0.0.1:8080/readyz; curl -s http://127.0.0.1:9464/metrics | grep gateway_requests_total

MSG
wait "${pids[1]}"
