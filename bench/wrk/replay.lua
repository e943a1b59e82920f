-- POST the mail-in checkout with one Idempotency-Key and one body, again and
-- again: after the first, the gateway answers from the kept answer (a replay:
-- no limit counted, nothing forwarded). nginx forwards each one.
wrk.method = "POST"
wrk.body = '{"email":"bench-replay@example.com","first_name":"Bench","last_name":"Replay"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = "bench-replay-0001"
