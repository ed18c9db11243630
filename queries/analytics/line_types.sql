-- Device types: leads per line type (mobile, landline, voip, …) of the phone each lead ends with.
--
-- Line types come from `phone_line_type` when the run had `[line_type]
-- enabled = true`. A phone without one is counted by why
-- (`line_type_status`): "not asked (budget/limit)" when the budget ran out,
-- a rate limit was full or a circuit open; "unknown number" when the
-- provider does not know it; "no answer" when the provider failed; "no
-- type given" when it described the number without a type; and
-- "not looked up" when the run had no line types. Leads with no phone at
-- all are not counted.
WITH typed AS (
    SELECT CASE
        WHEN line_type IS NOT NULL THEN line_type
        WHEN line_type_status IN ('budget_exhausted', 'rate_limited', 'circuit_open') THEN 'not asked (budget/limit)'
        WHEN line_type_status = 'unknown_number' THEN 'unknown number'
        WHEN line_type_status = 'error' THEN 'no answer'
        WHEN line_type_status IN ('found', 'cached') THEN 'no type given'
        ELSE 'not looked up'
    END AS line_type
    FROM enriched_leads
    WHERE phone_valid OR found_phone_e164 IS NOT NULL
)
SELECT
    line_type,
    count(*) AS leads,
    round(CAST(count(*) AS DOUBLE) / sum(count(*)) OVER (), 4) AS share
FROM typed
GROUP BY line_type
ORDER BY leads DESC, line_type
