-- Alerts by current severity (1-4) per model and category: escalations move an alert between bands.
SELECT model, category, CAST(substr(metric, 17) AS INTEGER) AS severity, SUM(amount) AS alerts
FROM counters_hourly
WHERE metric LIKE 'alerts_severity_%'
GROUP BY model, category, CAST(substr(metric, 17) AS INTEGER)
HAVING SUM(amount) <> 0
ORDER BY model, category, severity
