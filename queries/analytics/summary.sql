-- One row for the whole output: leads, valid own phones, lookups, phones found, hit rate, spend, cost per found phone.
--
-- `looked_up` counts the leads that went down the provider waterfall (not
-- skipped for a valid phone of their own, not answered from the lookup cache,
-- not `not_run`), as the run's summary does; `hit_rate` is `found` over it.
-- `spend_usd` is every provider call's cost in provider_usage (line types
-- included); `lookup_spend_usd` is what finding phones cost (the leads'
-- `lookup_cost_usd`), and `cost_per_found_usd` is that over the phones found.
WITH leads AS (
    SELECT
        count(*) AS leads,
        count(*) FILTER (WHERE phone_valid) AS valid_own_phones,
        count(*) FILTER (WHERE lookup_status NOT IN ('skipped_has_phone', 'cached', 'not_run')) AS looked_up,
        count(*) FILTER (WHERE lookup_status = 'found') AS found,
        count(*) FILTER (WHERE lookup_status = 'cached') AS from_cache,
        count(*) FILTER (WHERE phone_valid OR found_phone_e164 IS NOT NULL) AS with_phone,
        coalesce(sum(lookup_cost_usd), 0) AS lookup_spend_usd
    FROM enriched_leads
),
usage AS (
    SELECT
        count(*) FILTER (WHERE attempt > 0) AS provider_calls,
        coalesce(sum(cost_usd), 0) AS spend_usd
    FROM provider_usage
),
rejected AS (
    SELECT count(*) AS rejects FROM rejects
)
SELECT
    leads,
    valid_own_phones,
    looked_up,
    found,
    from_cache,
    with_phone,
    round(CAST(found AS DOUBLE) / nullif(looked_up, 0), 4) AS hit_rate,
    provider_calls,
    spend_usd,
    lookup_spend_usd,
    round(CAST(lookup_spend_usd AS DOUBLE) / nullif(found, 0), 4) AS cost_per_found_usd,
    rejects
FROM leads CROSS JOIN usage CROSS JOIN rejected
