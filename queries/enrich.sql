-- leadflow enrichment: every lead, its phone normalized and validated, and
-- a phone found through the provider waterfall for leads without a valid one.
--
-- Runs over the table `leads` (the lead columns, then any extra columns the
-- input carried). Edit freely: the output keeps whatever columns this query
-- returns, and gets `run_id` and `enriched_at` appended when it has neither.
-- `phone_info` parses each number once and `find_phone` runs the waterfall
-- once per lead; their fields are picked below. The `provider_calls` column
-- (the waterfall's attempts) becomes the `provider_usage` table and is not
-- written to `enriched_leads`. Without providers configured (`--config`),
-- `find_phone` calls nobody and says `not_run`.
WITH parsed AS (
    SELECT *,
           phone_info(phone_raw, country) AS p,
           find_phone(full_name, email, company_website, country, user_tier, phone_raw) AS f
    FROM leads
)
SELECT
    * EXCLUDE (p, f),
    p['e164']       AS phone_e164,
    p['valid']      AS phone_valid,
    p['country']    AS phone_country,
    p['type']       AS phone_type,
    p['error']      AS phone_error,
    f['phone_e164'] AS found_phone_e164,
    f['provider']   AS found_by,
    f['status']     AS lookup_status,
    f['cost_usd']   AS lookup_cost_usd,
    CAST(array_length(f['attempts']) AS INT) AS lookup_attempts,
    f['latency_ms'] AS lookup_latency_ms,
    -- Line type and carrier of the phone we end up with (a paid call each):
    -- phone_line_type(coalesce(p['e164'], f['phone_e164']))['line_type'] AS line_type,
    f['attempts']   AS provider_calls
FROM parsed
