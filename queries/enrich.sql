-- leadflow enrichment: every lead, its phone normalized and validated, and
-- a phone found through the provider waterfall for leads without a valid one.
--
-- Runs over the table `leads` (the lead columns, then any extra columns the
-- input carried). Edit freely: the output keeps whatever columns this query
-- returns, and gets `run_id` and `enriched_at` appended when it has neither.
-- `phone_info` parses each number once and `find_phone` runs the waterfall
-- once per lead, reading whether the lead's own phone is valid from
-- phone_info's answer instead of parsing it again; their fields are picked
-- below. Every provider call and skip is written to `provider_usage` by the
-- run itself, under the lead_id and organization_id passed here, whatever
-- this query selects. Without providers configured (`--config`),
-- `find_phone` calls nobody and says `not_run`. Paid calls cannot be made
-- conditional (CASE, COALESCE, AND/OR would still call for every row):
-- find_phone skips leads with a valid phone of their own, and a WHERE in a
-- subquery picks the rows to look up. Line type and carrier of each lead's
-- final phone are added around this query when the config says
-- `[line_type] enabled = true` (a paid call per number).
WITH parsed AS (
    SELECT *, phone_info(phone_raw, country) AS p
    FROM leads
),
found AS (
    SELECT *,
           find_phone(full_name, email, company_website, country, user_tier, p,
                      lead_id, organization_id) AS f
    FROM parsed
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
    f['policy']     AS policy
FROM found
