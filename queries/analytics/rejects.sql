-- Rejects by file and reason: rows that could not become leads, where they came from and why.
--
-- `source` is the file (or `kafka:topic/partition`); `reason` is the kind of
-- problem (the reason's text up to its first `:`, e.g. the field that was
-- wrong), with one full example and the first line it happened on.
SELECT
    source,
    split_part(reason, ':', 1) AS reason,
    count(*) AS rows,
    min(line) AS first_line,
    first_value(reason ORDER BY line) AS example
FROM rejects
GROUP BY source, split_part(reason, ':', 1)
ORDER BY rows DESC, source, reason
