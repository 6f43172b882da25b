-- title: Leap-day purchase events with their users and those users' February 2024 orders
-- anti-pattern: non-sargable predicates (a cast and date_trunc on indexed timestamps hide both indexes) plus SELECT * over a three-way join
SELECT *
FROM events AS e
JOIN users AS u ON u.id = e.user_id
JOIN orders AS o ON o.user_id = u.id
WHERE e.created_at::date = DATE '2024-02-29'
  AND date_trunc('month', o.created_at) = DATE '2024-02-01'
  AND e.event_type = 'purchase';
