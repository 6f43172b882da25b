-- title: Categories whose revenue is above the average category revenue, with their share and ratio to the top category
-- anti-pattern: repeated common subexpression: the same category-revenue aggregation computed four times (LASER §6.8)
SELECT t.category,
       t.revenue,
       round(100 * t.revenue / (SELECT sum(s.revenue)
                                FROM (SELECT p.category, sum(o.amount) AS revenue
                                      FROM orders AS o JOIN products AS p ON p.id = o.product_id
                                      GROUP BY p.category) AS s), 2) AS revenue_pct,
       round(t.revenue / (SELECT max(m.revenue)
                          FROM (SELECT p.category, sum(o.amount) AS revenue
                                FROM orders AS o JOIN products AS p ON p.id = o.product_id
                                GROUP BY p.category) AS m), 4) AS ratio_to_top
FROM (SELECT p.category, sum(o.amount) AS revenue
      FROM orders AS o JOIN products AS p ON p.id = o.product_id
      GROUP BY p.category) AS t
WHERE t.revenue > (SELECT avg(a.revenue)
                   FROM (SELECT p.category, sum(o.amount) AS revenue
                         FROM orders AS o JOIN products AS p ON p.id = o.product_id
                         GROUP BY p.category) AS a);
