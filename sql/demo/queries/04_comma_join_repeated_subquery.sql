-- title: Unusually large orders of the last weeks of 2024, compared with their product's average
-- anti-pattern: comma join (implicit cross join) with the same correlated scalar subquery repeated in SELECT and WHERE
SELECT o.id,
       u.email,
       p.name,
       o.amount,
       (SELECT round(avg(o2.amount), 2) FROM orders AS o2 WHERE o2.product_id = o.product_id) AS product_avg
FROM orders AS o, users AS u, products AS p
WHERE u.id = o.user_id
  AND p.id = o.product_id
  AND o.created_at >= TIMESTAMP '2024-12-10'
  AND o.amount > 1.5 * (SELECT round(avg(o2.amount), 2) FROM orders AS o2 WHERE o2.product_id = o.product_id);
