-- title: Per-user event statistics computed with window functions
-- anti-pattern: repeated full-scan window aggregates over the 1M-row events table, then DISTINCT, where one GROUP BY suffices
SELECT DISTINCT e.user_id,
       u.email,
       count(*) OVER (PARTITION BY e.user_id) AS event_count,
       count(e.referrer) OVER (PARTITION BY e.user_id) AS referred_events,
       min(e.created_at) OVER (PARTITION BY e.user_id) AS first_seen,
       max(e.created_at) OVER (PARTITION BY e.user_id) AS last_seen
FROM events AS e
JOIN users AS u ON u.id = e.user_id;
