-- Light load: each connection waits THINK_MS between requests (wrk measures
-- latency from the moment the request is written, after the delay).
think_ms = 5
function delay()
  return think_ms
end
