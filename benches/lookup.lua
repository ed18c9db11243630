-- wrk: POST one lead to /v1/lookups (benches/serve_lookups.sh sets the
-- environment). LEADFLOW_BENCH_DELAY_MS paces each connection (a fixed
-- rate of about connections / delay).
wrk.method = "POST"
wrk.body = os.getenv("LEADFLOW_BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("LEADFLOW_BENCH_KEY") or "")
local pace = tonumber(os.getenv("LEADFLOW_BENCH_DELAY_MS") or "0")
if pace > 0 then
  function delay()
    return pace
  end
end
