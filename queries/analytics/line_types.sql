-- Device types: leads per line type (mobile, landline, voip, …) of the phone each lead ends with.
--
-- Line types come from `phone_line_type` when the run had `[line_type]
-- enabled = true`; leads whose phone was not looked up show as `unknown`,
-- and leads with no phone at all are not counted.
SELECT
    coalesce(line_type, 'unknown') AS line_type,
    count(*) AS leads,
    round(CAST(count(*) AS DOUBLE) / sum(count(*)) OVER (), 4) AS share
FROM enriched_leads
WHERE phone_valid OR found_phone_e164 IS NOT NULL
GROUP BY coalesce(line_type, 'unknown')
ORDER BY leads DESC, line_type
