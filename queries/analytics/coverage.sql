-- Coverage by country and tier: leads, valid own phones, looked up, found, found rate, leads ending with a phone.
--
-- `country` is the lead's (ISO alpha-2; NULL when it had none) and `tier` its
-- `user_tier`. `found_rate` is found over looked up, as in the summary;
-- `phone_rate` is the share of leads that end with a phone (their own valid
-- one, found, or from the cache). Leads carry no acquisition source column of
-- their own: where an input passes one through (e.g. `utm_source`), add it to
-- the SELECT and GROUP BY.
SELECT
    country,
    user_tier AS tier,
    count(*) AS leads,
    count(*) FILTER (WHERE phone_valid) AS valid_own_phones,
    count(*) FILTER (WHERE lookup_status NOT IN ('skipped_has_phone', 'cached', 'not_run')) AS looked_up,
    count(*) FILTER (WHERE lookup_status = 'found') AS found,
    round(
        CAST(count(*) FILTER (WHERE lookup_status = 'found') AS DOUBLE)
            / nullif(count(*) FILTER (WHERE lookup_status NOT IN ('skipped_has_phone', 'cached', 'not_run')), 0),
        4
    ) AS found_rate,
    round(CAST(count(*) FILTER (WHERE phone_valid OR found_phone_e164 IS NOT NULL) AS DOUBLE) / count(*), 4) AS phone_rate
FROM enriched_leads
GROUP BY country, user_tier
ORDER BY leads DESC, country, tier
