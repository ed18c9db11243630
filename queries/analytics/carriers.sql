-- The 20 carriers with the most leads, with their line types.
--
-- Carriers come from `phone_line_type` (`[line_type] enabled = true`);
-- without it this query returns no rows.
SELECT
    carrier_name AS carrier,
    count(*) AS leads,
    count(*) FILTER (WHERE line_type = 'mobile') AS mobile,
    count(*) FILTER (WHERE line_type = 'landline') AS landline,
    count(*) FILTER (WHERE line_type NOT IN ('mobile', 'landline')) AS other
FROM enriched_leads
WHERE carrier_name IS NOT NULL
GROUP BY carrier_name
ORDER BY leads DESC, carrier
LIMIT 20
