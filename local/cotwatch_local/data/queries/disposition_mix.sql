-- Alerts by the disposition stored with them (did the reasoning go along with the request or refuse it).
SELECT model, category, substr(metric, 8) AS disposition, SUM(amount) AS alerts
FROM counters_hourly
WHERE metric IN ('alerts_complied', 'alerts_refused', 'alerts_unclear')
GROUP BY model, category, substr(metric, 8)
HAVING SUM(amount) <> 0
ORDER BY model, category, disposition
