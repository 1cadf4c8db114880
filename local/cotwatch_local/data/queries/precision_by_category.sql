-- Monitor precision by category according to triage: confirmed alerts over all triaged alerts.
SELECT category,
       SUM(CASE WHEN metric = 'triage_true_positive' THEN amount ELSE 0 END) AS true_positives,
       SUM(CASE WHEN metric = 'triage_false_positive' THEN amount ELSE 0 END) AS false_positives,
       CAST(SUM(CASE WHEN metric = 'triage_true_positive' THEN amount ELSE 0 END) AS DOUBLE)
           / NULLIF(SUM(amount), 0) AS triage_precision
FROM counters_hourly
WHERE metric IN ('triage_true_positive', 'triage_false_positive')
GROUP BY category
ORDER BY category
