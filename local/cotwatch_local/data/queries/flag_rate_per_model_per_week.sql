-- Flag rate per model and category per week: the share of a model's traces whose reasoning a category flagged.
-- A trace counts in the week of its first chunk, its flag in the week of its first chunk over the threshold.
WITH traces AS (
    SELECT model, date_trunc('week', CAST(dt AS DATE)) AS week, SUM(amount) AS traces
    FROM counters_hourly
    WHERE metric = 'traces'
    GROUP BY model, date_trunc('week', CAST(dt AS DATE))
),
flagged AS (
    SELECT model, category, date_trunc('week', CAST(dt AS DATE)) AS week, SUM(amount) AS flagged_traces
    FROM counters_hourly
    WHERE metric = 'flagged_traces'
    GROUP BY model, category, date_trunc('week', CAST(dt AS DATE))
)
SELECT t.model, t.week, f.category, f.flagged_traces, t.traces,
       CAST(f.flagged_traces AS DOUBLE) / t.traces AS flag_rate
FROM traces t
JOIN flagged f ON f.model = t.model AND f.week = t.week
ORDER BY t.model, t.week, f.category
