-- One row for the whole output: leads, valid own phones, lookups, phones found, hit rate, line types, spend, cost per found phone.
--
-- `looked_up` counts the leads that went down the provider waterfall (not
-- skipped for a valid phone of their own, not answered from the lookup cache,
-- not `not_run`), as the run's summary does; `hit_rate` is `found` over it.
-- `spend_usd` is every provider call's cost in provider_usage (line types
-- included); `lookup_spend_usd` is what finding phones cost (the leads'
-- `lookup_cost_usd`), and `cost_per_found_usd` is that over the phones found.
-- Of the leads that end with a phone, `line_type_known` have a line type,
-- `line_type_not_asked` were not asked about because the budget ran out, a
-- rate limit was full or a circuit open (`line_type_status`), and
-- `line_type_unknown_number` are numbers the provider does not know.
WITH leads AS (
    SELECT
        count(*) AS leads,
        count(*) FILTER (WHERE phone_valid) AS valid_own_phones,
        count(*) FILTER (WHERE lookup_status NOT IN ('skipped_has_phone', 'cached', 'not_run')) AS looked_up,
        count(*) FILTER (WHERE lookup_status = 'found') AS found,
        count(*) FILTER (WHERE lookup_status = 'cached') AS from_cache,
        count(*) FILTER (WHERE phone_valid OR found_phone_e164 IS NOT NULL) AS with_phone,
        count(*) FILTER (WHERE line_type IS NOT NULL) AS line_type_known,
        count(*) FILTER (WHERE line_type IS NULL
            AND line_type_status IN ('budget_exhausted', 'rate_limited', 'circuit_open')) AS line_type_not_asked,
        count(*) FILTER (WHERE line_type IS NULL AND line_type_status = 'unknown_number') AS line_type_unknown_number,
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
    line_type_known,
    line_type_not_asked,
    line_type_unknown_number,
    provider_calls,
    spend_usd,
    lookup_spend_usd,
    round(CAST(lookup_spend_usd AS DOUBLE) / nullif(found, 0), 4) AS cost_per_found_usd,
    rejects
FROM leads CROSS JOIN usage CROSS JOIN rejected
