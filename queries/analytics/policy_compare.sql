-- Each order policy of the A/B split: leads looked up, phones found, found rate, spend, cost per found phone, with 95% intervals.
--
-- From enriched_leads: a lead is counted under the policy its providers
-- were ordered by (`[waterfall] ab_share` keeps that share on `priority`,
-- chosen by a hash of lead_id); leads never ordered (a valid phone of
-- their own, no provider) have no policy, and leads the cache answered
-- (a repeat, a rerun) paid nothing under either order: both are left out. `spend_usd` is
-- what the leads' lookups paid; `cost_per_found_usd` is spend over phones
-- found. Intervals are 95%: the found rate's by the normal approximation,
-- the cost per found phone's by the delta method for a ratio of sums
-- (`_low`, `_high`). Two policies whose intervals do not overlap differ.
-- `cost_per_found_vs_priority` is the change against the priority order's
-- (−0.30: 30% less per found phone).
WITH leads AS (
    SELECT policy,
           CAST(coalesce(lookup_cost_usd, 0) AS DOUBLE) AS cost,
           CASE WHEN found_phone_e164 IS NOT NULL THEN 1.0 ELSE 0.0 END AS found
    FROM enriched_leads
    WHERE policy IS NOT NULL AND lookup_status IS DISTINCT FROM 'cached'
),
sums AS (
    SELECT policy,
           count(*) AS n,
           sum(found) AS f,
           sum(cost) AS c,
           sum(cost * cost) AS cc,
           sum(cost * found) AS cf
    FROM leads
    GROUP BY policy
),
ratios AS (
    SELECT *,
           f / n AS rate,
           c / nullif(f, 0) AS r
    FROM sums
),
spread AS (
    SELECT *,
           -- Standard error of spend / found: sqrt(Σ (c_i − r·f_i)² / (n − 1) / n) · n / f.
           sqrt(greatest(cc - 2 * r * cf + r * r * f, 0) / nullif(n - 1, 0) / n) * n / nullif(f, 0) AS r_se
    FROM ratios
),
priority AS (
    SELECT max(r) AS r_priority FROM ratios WHERE policy = 'priority'
)
SELECT
    policy,
    n AS leads_looked_up,
    CAST(f AS BIGINT) AS found,
    round(rate, 4) AS found_rate,
    round(greatest(rate - 1.96 * sqrt(rate * (1 - rate) / n), 0), 4) AS found_rate_low,
    round(least(rate + 1.96 * sqrt(rate * (1 - rate) / n), 1), 4) AS found_rate_high,
    round(c, 4) AS spend_usd,
    round(r, 4) AS cost_per_found_usd,
    round(greatest(r - 1.96 * r_se, 0), 4) AS cost_per_found_low,
    round(r + 1.96 * r_se, 4) AS cost_per_found_high,
    round(r / nullif(r_priority, 0) - 1, 4) AS cost_per_found_vs_priority
FROM spread CROSS JOIN priority
ORDER BY policy
