-- leadflow enrichment: every lead, its phone normalized and validated.
--
-- Runs over the table `leads` (the lead columns, then any extra columns the
-- input carried). Edit freely: the output keeps whatever columns this query
-- returns, and gets `run_id` and `enriched_at` appended when it has neither.
-- `phone_info` parses each number once; its fields are picked below.
-- Until the provider waterfall lands, the lookup columns say `not_run`.
WITH parsed AS (
    SELECT *, phone_info(phone_raw, country) AS p
    FROM leads
)
SELECT
    * EXCLUDE (p),
    p['e164']    AS phone_e164,
    p['valid']   AS phone_valid,
    p['country'] AS phone_country,
    p['type']    AS phone_type,
    p['error']   AS phone_error,
    CAST(NULL AS VARCHAR)        AS found_phone_e164,
    CAST(NULL AS VARCHAR)        AS found_by,
    'not_run'                    AS lookup_status,
    CAST(NULL AS DECIMAL(12, 6)) AS lookup_cost_usd,
    CAST(NULL AS INT)            AS lookup_attempts,
    CAST(NULL AS BIGINT)         AS lookup_latency_ms
FROM parsed
