-- POST /api/v3/public/offer/mail-in with a distinct email on every request,
-- so the Redis limiter sees a new body:email key each time.
-- Arguments after `--`: a run tag (keeps emails distinct across runs).
-- Headers given with -H (e.g. x-api-key for the direct run) are kept.
local counter = 0
local tag = "r"
local hdrs = {}

function init(args)
  if args[1] then tag = args[1] end
  for name, value in pairs(wrk.headers) do hdrs[name] = value end
  hdrs["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = '{"email":"bench-' .. tag .. '-' .. counter .. '@example.com",' ..
    '"first_name":"Bench","last_name":"Load","phone":null,' ..
    '"devices":[{"model_id":42,"condition_id":3,"quantity":1}]}'
  return wrk.format("POST", "/api/v3/public/offer/mail-in", hdrs, body)
end
