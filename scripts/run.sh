#!/usr/bin/env bash
# `make run`: the sandbox (a local Reusely stand-in) and the gateway in front of it,
# with the repository's policy plus a demo client whose token is made for this run.
#
# Ports come from the environment: GATEWAY_BIND (127.0.0.1:8080), GATEWAY_METRICS_BIND
# (127.0.0.1:9464), SANDBOX_BIND (127.0.0.1:8081). Limits are counted in the memory of
# one worker, unless GATEWAY_REDIS_URL is set (then in Redis, GATEWAY_WORKERS workers).
# SANDBOX_* switches (docs/configuration.md, The sandbox) reach the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh run
gateway_bind=${GATEWAY_BIND:-127.0.0.1:8080}
metrics_bind=${GATEWAY_METRICS_BIND:-127.0.0.1:9464}
sandbox_bind=${SANDBOX_BIND:-127.0.0.1:8081}
gw="http://$gateway_bind" sandbox="http://$sandbox_bind" metrics="http://$metrics_bind"
export REUSELY_API_KEY=sandbox-api-key REUSELY_SECRET_KEY=sandbox-secret-key REUSELY_TENANT_ID=sandbox-tenant
export REUSELY_BASE_URL=$sandbox
unset GATEWAY_CONFIG REUSELY_MARKETPLACE_KEY REUSELY_API_KEY_FILE REUSELY_SECRET_KEY_FILE \
  REUSELY_TENANT_ID_FILE REUSELY_MARKETPLACE_KEY_FILE
if [ -n "${GATEWAY_REDIS_URL:-}" ]; then
  export GATEWAY_WORKERS=${GATEWAY_WORKERS:-2}
  limits="counted in Redis (GATEWAY_REDIS_URL), shared by its $GATEWAY_WORKERS workers"
else
  [ "${GATEWAY_WORKERS:-1}" = 1 ] || echo "make run: one worker without GATEWAY_REDIS_URL, so that limits hold" >&2
  export GATEWAY_WORKERS=1
  limits="counted in the memory of its one worker (set GATEWAY_REDIS_URL to count in Redis)"
fi

token=$("$BIN/python" scripts/run_policy.py config/gateway.yaml "$tmp/gateway.yaml")
start_sandbox "$sandbox_bind"
start_gateway "$tmp/gateway.yaml" "$gateway_bind" "$metrics_bind"
checkout='{"email":"shopper@example.com","first_name":"Ada","last_name":"Lovelace","payout_method":"paypal","offer_detail":[{"product_id":1,"condition_id":2}]}'

cat <<MSG

  reusely-gateway is running on $gw, in front of the Reusely sandbox
  on $sandbox (a local stand-in for api.reusely.com, with a small fixed catalog).
  Limits are $limits.
  Metrics: $metrics/metrics. Logs: the gateway's below, the sandbox's in $tmp/sandbox.log.
  Ctrl-C stops both.

  Demo token for the internal routes (offer-from-lead, admin), made for this run only:
    $token

  # 1. Catalog read, a public route: no key in the request; the gateway adds x-api-key and x-tenant-id.
  curl -s $gw/api/v2/public/catalog/categories

  # 2. Mail-in checkout, a public route. Reusely allows 5 per email per hour, so the gateway
  #    refuses the sixth itself. Prints: 201 201 201 201 201 429
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' -X POST $gw/api/v3/public/offer/mail-in \\
    -H 'content-type: application/json' -d '$checkout'; done; echo

  # 3. The gateway's refusal: 429 rate_limited, with Retry-After in seconds.
  curl -s -i -X POST $gw/api/v3/public/offer/mail-in -H 'content-type: application/json' -d '$checkout'

  # 4. An internal route with the demo token: the admin orders list (the gateway adds x-secret-key).
  curl -s $gw/api/v2/admin/orders -H 'Authorization: Bearer $token'

  # 5. The same without a token: 401 unauthorized, from the gateway.
  curl -s -i $gw/api/v2/admin/orders

  # 6. Rehearse a lapsed Reusely subscription: the sandbox refuses the gateway's key, and
  #    the caller gets 502 upstream_credentials_rejected, not Reusely's 401; then back to normal.
  #    (A catalog read not asked for yet: one already kept, like 1's, is still served.)
  curl -s -X POST $sandbox/_sandbox/state -d '{"lapsed": true}'; echo
  curl -s -i $gw/api/v2/public/catalog/category-brand/phones; echo
  curl -s -X DELETE $sandbox/_sandbox/state; echo

  # 7. Health, readiness and metrics.
  curl -s $gw/readyz; echo; curl -s $metrics/metrics | grep '^gateway_requests_total'

MSG
show_gateway_log
wait "$gateway_pid"
