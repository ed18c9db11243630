-- Each provider, each day: calls, hits, hit rate, errors, rate limits, retries, p50/p95 latency, spend, cost per found phone.
--
-- From provider_usage (`day` is the day of the call). `calls` are requests
-- made (attempt ≥ 1: skips for tier, open breaker or local rate limit make
-- none); `retries` are calls after a lead's first to that provider;
-- `errors` are errors and timeouts; `rate_limited` counts 429s and local
-- limits alike. Latency percentiles are over calls (interpolated, in ms);
-- `cost_per_found_usd` is the day's spend with the provider over its hits.
WITH daily AS (
    SELECT
        provider,
        dt AS day,
        count(*) FILTER (WHERE attempt > 0) AS calls,
        count(*) FILTER (WHERE outcome = 'hit') AS hits,
        count(*) FILTER (WHERE outcome IN ('error', 'timeout')) AS errors,
        count(*) FILTER (WHERE outcome = 'rate_limited') AS rate_limited,
        count(*) FILTER (WHERE attempt > 1) AS retries,
        round(percentile_cont(0.5) WITHIN GROUP (ORDER BY CASE WHEN attempt > 0 THEN latency_ms END), 1) AS p50_latency_ms,
        round(percentile_cont(0.95) WITHIN GROUP (ORDER BY CASE WHEN attempt > 0 THEN latency_ms END), 1) AS p95_latency_ms,
        sum(cost_usd) AS spend_usd
    FROM provider_usage
    GROUP BY provider, dt
)
SELECT
    provider,
    day,
    calls,
    hits,
    round(CAST(hits AS DOUBLE) / nullif(calls, 0), 4) AS hit_rate,
    errors,
    rate_limited,
    retries,
    p50_latency_ms,
    p95_latency_ms,
    spend_usd,
    round(CAST(spend_usd AS DOUBLE) / nullif(hits, 0), 4) AS cost_per_found_usd
FROM daily
ORDER BY day, provider
