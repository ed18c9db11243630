-- Spend by day, provider and organization: calls, hits and dollars, for billing each customer.
--
-- From provider_usage (`day` is the day of the call, `organization_id` the
-- lead's owner as the run was told it). Rows with no spend (skips, free
-- misses) are kept so calls add up.
SELECT
    dt AS day,
    provider,
    organization_id,
    count(*) FILTER (WHERE attempt > 0) AS calls,
    count(*) FILTER (WHERE outcome = 'hit') AS hits,
    sum(cost_usd) AS spend_usd
FROM provider_usage
GROUP BY dt, provider, organization_id
ORDER BY day, provider, organization_id
