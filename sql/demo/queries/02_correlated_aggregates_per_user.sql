-- title: Per-user activity report (orders, spend, last order, page views)
-- anti-pattern: N+1 correlated aggregate subqueries in the SELECT list, one SubPlan per user and subquery
SELECT u.id,
       u.email,
       (SELECT count(*) FROM orders AS o WHERE o.user_id = u.id) AS order_count,
       (SELECT sum(o.amount) FROM orders AS o WHERE o.user_id = u.id) AS total_spent,
       (SELECT max(o.created_at) FROM orders AS o WHERE o.user_id = u.id) AS last_order_at,
       (SELECT count(*) FROM events AS e WHERE e.user_id = u.id AND e.event_type = 'view') AS page_views,
       (SELECT count(*) FROM events AS e WHERE e.user_id = u.id AND e.event_type = 'purchase') AS purchases
FROM users AS u
WHERE u.is_active;
