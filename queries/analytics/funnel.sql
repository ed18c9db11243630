-- The funnel, one row per step: leads → valid own phone → looked up → found → with a phone → line type known,
-- then the leads with a phone and no line type, by why.
--
-- `share` is each step's leads over all leads. A lead with a valid phone of
-- its own is not looked up, so "looked up" is taken from the others; "with a
-- phone" is the leads that end with one (their own, found, or from the
-- cache); "line type known" counts those whose phone has a line type
-- (`[line_type] enabled = true`; 0 otherwise). The last two steps are the
-- phones without one: "line type not asked" when the budget ran out, a rate
-- limit was full or a circuit open, "line type unknown number" when the
-- provider does not know the number (`line_type_status`).
WITH counts AS (
    SELECT
        count(*) AS leads,
        count(*) FILTER (WHERE phone_valid) AS valid_own_phone,
        count(*) FILTER (WHERE lookup_status NOT IN ('skipped_has_phone', 'cached', 'not_run')) AS looked_up,
        count(*) FILTER (WHERE lookup_status = 'found') AS found,
        count(*) FILTER (WHERE phone_valid OR found_phone_e164 IS NOT NULL) AS with_phone,
        count(*) FILTER (WHERE line_type IS NOT NULL) AS line_type_known,
        count(*) FILTER (WHERE line_type IS NULL
            AND line_type_status IN ('budget_exhausted', 'rate_limited', 'circuit_open')) AS line_type_not_asked,
        count(*) FILTER (WHERE line_type IS NULL AND line_type_status = 'unknown_number') AS line_type_unknown
    FROM enriched_leads
),
steps AS (
    SELECT 1 AS step, 'leads' AS stage, leads AS n, leads AS total FROM counts
    UNION ALL SELECT 2, 'valid own phone', valid_own_phone, leads FROM counts
    UNION ALL SELECT 3, 'looked up', looked_up, leads FROM counts
    UNION ALL SELECT 4, 'found', found, leads FROM counts
    UNION ALL SELECT 5, 'with a phone', with_phone, leads FROM counts
    UNION ALL SELECT 6, 'line type known', line_type_known, leads FROM counts
    UNION ALL SELECT 7, 'line type not asked (budget/limit)', line_type_not_asked, leads FROM counts
    UNION ALL SELECT 8, 'line type unknown number', line_type_unknown, leads FROM counts
)
SELECT step, stage, n AS leads, round(CAST(n AS DOUBLE) / nullif(total, 0), 4) AS share
FROM steps
ORDER BY step
