-- case: decorrelate_count_subquery_with_coalesce
-- why: count over no rows is 0; the LEFT JOIN gives NULL there, so COALESCE(.., 0) restores it
-- expect: equivalent
SELECT c.id, (SELECT count(*) FROM orders AS o WHERE o.customer_id = c.id) AS n_orders
FROM customers AS c WHERE c.tier = 2 ORDER BY c.id;
SELECT c.id, COALESCE(a.n, 0) AS n_orders
FROM customers AS c
LEFT JOIN (SELECT o.customer_id, count(*) AS n FROM orders AS o GROUP BY o.customer_id) AS a ON a.customer_id = c.id
WHERE c.tier = 2 ORDER BY c.id;

-- case: decorrelate_max_subquery_to_left_join
-- why: max over no rows is NULL, which is what the unmatched LEFT JOIN yields; the NULL product_id group never matches
-- expect: equivalent
SELECT p.id, (SELECT max(o.amount) FROM orders AS o WHERE o.product_id = p.id) AS biggest FROM products AS p;
SELECT p.id, m.biggest
FROM products AS p
LEFT JOIN (SELECT o.product_id, max(o.amount) AS biggest FROM orders AS o GROUP BY o.product_id) AS m ON m.product_id = p.id;

-- case: decorrelate_sum_in_where_to_inner_join
-- why: a customer without orders has sum NULL, the comparison is not true, and the inner join drops it too
-- expect: equivalent
SELECT c.id, c.name FROM customers AS c
WHERE (SELECT sum(o.amount) FROM orders AS o WHERE o.customer_id = c.id) > 3000;
SELECT c.id, c.name FROM customers AS c
JOIN (SELECT o.customer_id, sum(o.amount) AS total FROM orders AS o GROUP BY o.customer_id) AS t ON t.customer_id = c.id
WHERE t.total > 3000;

-- case: decorrelate_count_in_where_with_coalesce
-- why: customers without matching orders have count 0 < 2; COALESCE keeps them after the LEFT JOIN
-- expect: equivalent
SELECT c.id FROM customers AS c
WHERE (SELECT count(*) FROM orders AS o WHERE o.customer_id = c.id AND o.qty = 10) < 2;
SELECT c.id FROM customers AS c
LEFT JOIN (SELECT o.customer_id, count(*) AS n FROM orders AS o WHERE o.qty = 10 GROUP BY o.customer_id) AS a ON a.customer_id = c.id
WHERE COALESCE(a.n, 0) < 2;

-- case: in_subquery_to_exists
-- why: IN and EXISTS are the same semi-join in WHERE; a NULL product_id only makes IN unknown, which also filters the row
-- expect: equivalent
SELECT p.id, p.name FROM products AS p
WHERE p.id IN (SELECT o.product_id FROM orders AS o WHERE o.qty >= 8 AND o.placed >= date '2024-10-01');
SELECT p.id, p.name FROM products AS p
WHERE EXISTS (SELECT 1 FROM orders AS o WHERE o.product_id = p.id AND o.qty >= 8 AND o.placed >= date '2024-10-01');

-- case: in_subquery_to_join_on_distinct_derived_table
-- why: the derived table is made distinct, so duplicate visits cannot multiply the customer rows
-- expect: equivalent
SELECT c.id, c.city FROM customers AS c
WHERE c.id IN (SELECT v.customer_id FROM visits AS v WHERE v.page = 'pricing' AND v.seen < date '2024-04-01');
SELECT c.id, c.city FROM customers AS c
JOIN (SELECT DISTINCT v.customer_id FROM visits AS v WHERE v.page = 'pricing' AND v.seen < date '2024-04-01') AS v ON v.customer_id = c.id;

-- case: exists_to_distinct_join_with_primary_key
-- why: DISTINCT over a column list containing the primary key collapses exactly the join fan-out
-- expect: equivalent
SELECT c.id, c.name FROM customers AS c
WHERE EXISTS (SELECT 1 FROM visits AS v WHERE v.customer_id = c.id AND v.page = 'docs');
SELECT DISTINCT c.id, c.name FROM customers AS c
JOIN visits AS v ON v.customer_id = c.id
WHERE v.page = 'docs';

-- case: not_in_to_not_exists_over_not_null_columns
-- why: customers.id and orders.customer_id are both NOT NULL, so NOT IN has no NULL to trip on
-- expect: equivalent
SELECT c.id FROM customers AS c
WHERE c.id NOT IN (SELECT o.customer_id FROM orders AS o WHERE o.qty = 10 AND o.placed >= date '2024-07-01');
SELECT c.id FROM customers AS c
WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = c.id AND o.qty = 10 AND o.placed >= date '2024-07-01');

-- case: not_exists_to_left_join_primary_key_is_null
-- why: orders.id is a NOT NULL primary key, so it is NULL exactly on the unmatched row of the LEFT JOIN
-- expect: equivalent
SELECT p.id, p.name FROM products AS p
WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.product_id = p.id AND o.gift AND o.qty = 10);
SELECT p.id, p.name FROM products AS p
LEFT JOIN orders AS o ON o.product_id = p.id AND o.gift AND o.qty = 10
WHERE o.id IS NULL;

-- case: or_to_union_with_primary_key_in_output
-- why: orders.id is in the output, so UNION removes only the double hits of one and the same row
-- expect: equivalent
SELECT o.id, o.amount FROM orders AS o WHERE o.qty = 10 OR o.discount = 0.15;
SELECT o.id, o.amount FROM orders AS o WHERE o.qty = 10
UNION
SELECT o.id, o.amount FROM orders AS o WHERE o.discount = 0.15;

-- case: distinct_removed_primary_key_in_select
-- why: customers.id is the primary key, so the selected rows are already distinct
-- expect: equivalent
SELECT DISTINCT c.id, c.name, c.city FROM customers AS c WHERE c.tier = 1;
SELECT c.id, c.name, c.city FROM customers AS c WHERE c.tier = 1;

-- case: distinct_removed_many_to_one_join
-- why: each order joins at most one customer (join on its primary key), so orders.id stays unique
-- expect: equivalent
SELECT DISTINCT o.id, o.placed, c.name FROM orders AS o JOIN customers AS c ON c.id = o.customer_id WHERE c.city = 'Rome';
SELECT o.id, o.placed, c.name FROM orders AS o JOIN customers AS c ON c.id = o.customer_id WHERE c.city = 'Rome';

-- case: join_elimination_not_null_foreign_key
-- why: orders.customer_id is NOT NULL and references customers.id, so the join keeps every order exactly once
-- expect: equivalent
SELECT o.id, o.amount FROM orders AS o JOIN customers AS c ON c.id = o.customer_id WHERE o.placed >= date '2024-12-01';
SELECT o.id, o.amount FROM orders AS o WHERE o.placed >= date '2024-12-01';

-- case: left_join_elimination_unique_key
-- why: a LEFT JOIN on the primary key of products neither drops nor duplicates orders, NULL product_id included
-- expect: equivalent
SELECT o.id, o.qty FROM orders AS o LEFT JOIN products AS p ON p.id = o.product_id WHERE o.qty > 6;
SELECT o.id, o.qty FROM orders AS o WHERE o.qty > 6;

-- case: semi_join_elimination_not_null_foreign_key
-- why: the foreign key guarantees the customer exists for every order
-- expect: equivalent
SELECT o.id FROM orders AS o WHERE o.gift AND EXISTS (SELECT 1 FROM customers AS c WHERE c.id = o.customer_id);
SELECT o.id FROM orders AS o WHERE o.gift;

-- case: predicate_pushdown_into_grouped_subquery
-- why: the filter is on the grouping key, so it removes whole groups either before or after grouping
-- expect: equivalent
SELECT t.customer_id, t.total
FROM (SELECT o.customer_id, sum(o.amount) AS total FROM orders AS o GROUP BY o.customer_id) AS t
WHERE t.customer_id <= 50;
SELECT o.customer_id, sum(o.amount) AS total FROM orders AS o WHERE o.customer_id <= 50 GROUP BY o.customer_id;

-- case: predicate_pushdown_into_cte
-- why: the CTE is a plain filter-project, so the outer filter can move inside it
-- expect: equivalent
WITH recent AS (SELECT o.id, o.customer_id, o.amount FROM orders AS o WHERE o.placed >= date '2024-06-01')
SELECT r.id, r.amount FROM recent AS r WHERE r.amount > 400;
WITH recent AS (SELECT o.id, o.customer_id, o.amount FROM orders AS o WHERE o.placed >= date '2024-06-01' AND o.amount > 400)
SELECT r.id, r.amount FROM recent AS r;

-- case: cte_inlined_into_join
-- why: a CTE referenced once, without side effects, is the same as joining its source table with its filter
-- expect: equivalent
WITH top_tier AS (SELECT c.id, c.city FROM customers AS c WHERE c.tier = 3)
SELECT o.id, t.city FROM orders AS o JOIN top_tier AS t ON t.id = o.customer_id WHERE o.qty = 2;
SELECT o.id, c.city FROM orders AS o JOIN customers AS c ON c.id = o.customer_id WHERE c.tier = 3 AND o.qty = 2;

-- case: count_star_vs_count_primary_key
-- why: the primary key is never NULL, so count(id) counts every row; the NULL city group is kept by both
-- expect: equivalent
SELECT c.city, count(*) AS n FROM customers AS c GROUP BY c.city;
SELECT c.city, count(c.id) AS n FROM customers AS c GROUP BY c.city;

-- case: left_join_count_key_vs_scalar_count
-- why: count(o.id) over a LEFT JOIN is 0 for an unordered product, as the correlated count(*) is
-- expect: equivalent
SELECT p.id, count(o.id) AS n_orders FROM products AS p LEFT JOIN orders AS o ON o.product_id = p.id GROUP BY p.id ORDER BY p.id;
SELECT p.id, (SELECT count(*) FROM orders AS o WHERE o.product_id = p.id) AS n_orders FROM products AS p ORDER BY p.id;

-- case: between_to_closed_range
-- why: BETWEEN a AND b is defined as >= a AND <= b
-- expect: equivalent
SELECT o.id, o.placed FROM orders AS o WHERE o.placed BETWEEN date '2024-02-01' AND date '2024-02-29';
SELECT o.id, o.placed FROM orders AS o WHERE o.placed >= date '2024-02-01' AND o.placed <= date '2024-02-29';

-- case: date_trunc_month_to_sargable_range
-- why: a date truncates to March 2024 exactly when it lies in [2024-03-01, 2024-04-01)
-- expect: equivalent
SELECT o.id, o.amount FROM orders AS o WHERE date_trunc('month', o.placed) = date '2024-03-01';
SELECT o.id, o.amount FROM orders AS o WHERE o.placed >= date '2024-03-01' AND o.placed < date '2024-04-01';

-- case: date_trunc_day_on_timestamp_to_sargable_range
-- why: a timestamp truncates to 2024-03-06 exactly when it lies in [2024-03-06, 2024-03-07); NULL shipped fails both
-- expect: equivalent
SELECT o.id FROM orders AS o WHERE date_trunc('day', o.shipped) = timestamp '2024-03-06';
SELECT o.id FROM orders AS o WHERE o.shipped >= timestamp '2024-03-06' AND o.shipped < timestamp '2024-03-07';

-- case: extract_year_to_sargable_range
-- why: extract(year) of a date is 2024 exactly when it lies in [2024-01-01, 2025-01-01)
-- expect: equivalent
SELECT o.id, o.placed FROM orders AS o WHERE extract(year FROM o.placed) = 2024 AND o.customer_id <= 20;
SELECT o.id, o.placed FROM orders AS o WHERE o.placed >= date '2024-01-01' AND o.placed < date '2025-01-01' AND o.customer_id <= 20;

-- case: having_on_group_key_to_where
-- why: a HAVING condition on the grouping key only removes whole groups, which WHERE does before grouping
-- expect: equivalent
SELECT o.customer_id, count(*) AS n, sum(o.amount) AS total FROM orders AS o GROUP BY o.customer_id HAVING o.customer_id < 40;
SELECT o.customer_id, count(*) AS n, sum(o.amount) AS total FROM orders AS o WHERE o.customer_id < 40 GROUP BY o.customer_id;

-- case: window_sum_to_group_by_join
-- why: customer_id is NOT NULL, so joining the per-customer sums back on it reproduces the window partition
-- expect: equivalent
SELECT o.id, o.amount, sum(o.amount) OVER (PARTITION BY o.customer_id) AS customer_total
FROM orders AS o WHERE o.customer_id <= 30;
SELECT o.id, o.amount, t.customer_total
FROM orders AS o
JOIN (SELECT customer_id, sum(amount) AS customer_total FROM orders WHERE customer_id <= 30 GROUP BY customer_id) AS t
  ON t.customer_id = o.customer_id
WHERE o.customer_id <= 30;

-- case: window_max_filter_to_correlated_max
-- why: amount is NOT NULL; both keep the orders whose amount equals their customer's maximum, ties included
-- expect: equivalent
SELECT x.id, x.customer_id, x.amount
FROM (SELECT o.id, o.customer_id, o.amount, max(o.amount) OVER (PARTITION BY o.customer_id) AS top FROM orders AS o) AS x
WHERE x.amount = x.top;
SELECT o.id, o.customer_id, o.amount FROM orders AS o
WHERE o.amount = (SELECT max(o2.amount) FROM orders AS o2 WHERE o2.customer_id = o.customer_id);

-- case: in_list_to_or
-- why: x IN (a, b) is defined as x = a OR x = b, NULL city included
-- expect: equivalent
SELECT c.id, c.city FROM customers AS c WHERE c.city IN ('Berlin', 'Rome');
SELECT c.id, c.city FROM customers AS c WHERE c.city = 'Berlin' OR c.city = 'Rome';

-- case: check_constraint_tier_complement
-- why: tier is NOT NULL with CHECK (tier BETWEEN 1 AND 3), so tier <> 2 means tier IN (1, 3)
-- expect: equivalent
SELECT c.id, c.tier FROM customers AS c WHERE c.tier IN (1, 3);
SELECT c.id, c.tier FROM customers AS c WHERE c.tier <> 2;

-- case: check_constraint_redundant_predicate_removed
-- why: CHECK (qty > 0) and NOT NULL make the first conjunct always true
-- expect: equivalent
SELECT o.id, o.amount FROM orders AS o WHERE o.qty > 0 AND o.amount > 700;
SELECT o.id, o.amount FROM orders AS o WHERE o.amount > 700;

-- case: redundant_is_not_null_on_not_null_column_removed
-- why: orders.customer_id is declared NOT NULL
-- expect: equivalent
SELECT o.id, o.customer_id FROM orders AS o WHERE o.customer_id IS NOT NULL AND o.placed < date '2023-02-01';
SELECT o.id, o.customer_id FROM orders AS o WHERE o.placed < date '2023-02-01';

-- case: coalesce_on_not_null_column_removed
-- why: amount is NOT NULL, so COALESCE never takes its second argument; both outputs are numeric
-- expect: equivalent
SELECT o.id, COALESCE(o.amount, 0) AS amount FROM orders AS o WHERE o.gift;
SELECT o.id, o.amount FROM orders AS o WHERE o.gift;

-- case: case_when_null_to_coalesce
-- why: COALESCE(x, 0) is defined as CASE WHEN x IS NOT NULL THEN x ELSE 0 END
-- expect: equivalent
SELECT o.id, CASE WHEN o.discount IS NULL THEN 0 ELSE o.discount END AS discount FROM orders AS o WHERE o.customer_id <= 10;
SELECT o.id, COALESCE(o.discount, 0) AS discount FROM orders AS o WHERE o.customer_id <= 10;

-- case: union_of_complementary_ranges_on_primary_key
-- why: qty is NOT NULL so every order falls in exactly one branch, and UNION cannot merge distinct ids
-- expect: equivalent
SELECT o.id FROM orders AS o WHERE o.qty < 6
UNION
SELECT o.id FROM orders AS o WHERE o.qty >= 6;
SELECT o.id FROM orders AS o;

-- case: distinct_to_group_by
-- why: DISTINCT and GROUP BY both treat NULLs as one group and emit each group once
-- expect: equivalent
SELECT DISTINCT c.city, c.tier FROM customers AS c;
SELECT c.city, c.tier FROM customers AS c GROUP BY c.city, c.tier;

-- case: union_of_keyless_branches_to_distinct_in
-- why: UNION deduplicates like DISTINCT does (NULLs equal), so duplicate visits and NULL ids cannot tell them apart
-- expect: equivalent
SELECT v.customer_id FROM visits AS v WHERE v.page = 'home'
UNION
SELECT v.customer_id FROM visits AS v WHERE v.page = 'blog';
SELECT DISTINCT v.customer_id FROM visits AS v WHERE v.page IN ('home', 'blog');

-- case: left_join_to_inner_join_null_rejecting_where
-- why: p.category = 'books' is never true on the NULL-extended rows, so the LEFT JOIN acts as an inner join
-- expect: equivalent
SELECT o.id, p.name FROM orders AS o LEFT JOIN products AS p ON p.id = o.product_id WHERE p.category = 'books';
SELECT o.id, p.name FROM orders AS o JOIN products AS p ON p.id = o.product_id WHERE p.category = 'books';

-- case: scalar_subquery_to_inner_join_not_null_foreign_key
-- why: customer_id is a NOT NULL foreign key to a primary key: exactly one customer per order
-- expect: equivalent
SELECT o.id, (SELECT c.name FROM customers AS c WHERE c.id = o.customer_id) AS customer_name FROM orders AS o WHERE o.qty = 10;
SELECT o.id, c.name AS customer_name FROM orders AS o JOIN customers AS c ON c.id = o.customer_id WHERE o.qty = 10;

-- case: scalar_subquery_to_left_join_nullable_foreign_key
-- why: product_id is nullable, so the LEFT JOIN keeps orders without a product with a NULL name, as the subquery does
-- expect: equivalent
SELECT o.id, (SELECT p.name FROM products AS p WHERE p.id = o.product_id) AS product_name FROM orders AS o WHERE o.gift;
SELECT o.id, p.name AS product_name FROM orders AS o LEFT JOIN products AS p ON p.id = o.product_id WHERE o.gift;

-- case: max_subquery_to_not_exists_greater
-- why: amount is NOT NULL; the rows equal to the maximum are the rows nothing exceeds, and an empty table gives none
-- expect: equivalent
SELECT o.id, o.amount FROM orders AS o WHERE o.amount = (SELECT max(o2.amount) FROM orders AS o2);
SELECT o.id, o.amount FROM orders AS o WHERE NOT EXISTS (SELECT 1 FROM orders AS o2 WHERE o2.amount > o.amount);

-- case: group_by_primary_key_functional_dependency
-- why: c.name is functionally dependent on the primary key c.id, so adding it to GROUP BY changes no group
-- expect: equivalent
SELECT c.id, c.name, count(*) AS n FROM customers AS c JOIN orders AS o ON o.customer_id = c.id GROUP BY c.id;
SELECT c.id, c.name, count(*) AS n FROM customers AS c JOIN orders AS o ON o.customer_id = c.id GROUP BY c.id, c.name;

-- case: eager_aggregation_below_join
-- why: each customer belongs to one city, so summing per customer first and then per city gives the same exact numeric sums
-- expect: equivalent
SELECT c.city, sum(o.amount) AS total FROM orders AS o JOIN customers AS c ON c.id = o.customer_id GROUP BY c.city;
SELECT c.city, sum(t.total) AS total
FROM (SELECT o.customer_id, sum(o.amount) AS total FROM orders AS o GROUP BY o.customer_id) AS t
JOIN customers AS c ON c.id = t.customer_id
GROUP BY c.city;

-- case: count_distinct_primary_key_to_count_star
-- why: orders.id is unique and NOT NULL, so DISTINCT removes nothing and count skips nothing
-- expect: equivalent
SELECT o.customer_id, count(DISTINCT o.id) AS n FROM orders AS o GROUP BY o.customer_id;
SELECT o.customer_id, count(*) AS n FROM orders AS o GROUP BY o.customer_id;

-- case: count_greater_than_zero_to_exists
-- why: a correlated count(*) is positive exactly when some matching row exists
-- expect: equivalent
SELECT p.id FROM products AS p WHERE (SELECT count(*) FROM orders AS o WHERE o.product_id = p.id AND o.gift) > 0;
SELECT p.id FROM products AS p WHERE EXISTS (SELECT 1 FROM orders AS o WHERE o.product_id = p.id AND o.gift);

-- case: grouped_sum_of_coalesce_vs_coalesce_of_sum
-- why: a GROUP BY group is never empty, so sum(COALESCE(d, 0)) and COALESCE(sum(d), 0) agree, all-NULL groups included
-- expect: equivalent
SELECT o.customer_id, sum(COALESCE(o.discount, 0)) AS total_discount FROM orders AS o GROUP BY o.customer_id;
SELECT o.customer_id, COALESCE(sum(o.discount), 0) AS total_discount FROM orders AS o GROUP BY o.customer_id;

-- case: de_morgan_under_three_valued_logic
-- why: De Morgan's laws hold in SQL's three-valued logic, so NULL city behaves the same on both sides
-- expect: equivalent
SELECT c.id FROM customers AS c WHERE NOT (c.tier = 1 OR c.city = 'Berlin');
SELECT c.id FROM customers AS c WHERE c.tier <> 1 AND c.city <> 'Berlin';

-- case: self_join_on_primary_key_eliminated
-- why: joining orders to itself on its primary key pairs each row with itself only
-- expect: equivalent
SELECT o.id, o2.amount FROM orders AS o JOIN orders AS o2 ON o2.id = o.id WHERE o.gift;
SELECT o.id, o.amount FROM orders AS o WHERE o.gift;

-- case: is_not_true_on_not_null_boolean
-- why: gift is a NOT NULL boolean, so IS NOT TRUE and NOT agree (they differ only on NULL)
-- expect: equivalent
SELECT o.id FROM orders AS o WHERE o.gift IS NOT TRUE AND o.customer_id = 42;
SELECT o.id FROM orders AS o WHERE NOT o.gift AND o.customer_id = 42;

-- case: intersect_to_exists_over_not_null_key
-- why: orders.customer_id is NOT NULL, so a NULL visits.customer_id is in neither result; both deduplicate
-- expect: equivalent
SELECT v.customer_id FROM visits AS v WHERE v.page = 'home'
INTERSECT
SELECT o.customer_id FROM orders AS o WHERE o.gift;
SELECT DISTINCT v.customer_id FROM visits AS v
WHERE v.page = 'home' AND EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = v.customer_id AND o.gift);

-- case: except_to_not_exists_over_primary_key
-- why: customers.id is unique and NOT NULL and orders.customer_id is NOT NULL, so EXCEPT is an anti-join here
-- expect: equivalent
SELECT c.id FROM customers AS c
EXCEPT
SELECT o.customer_id FROM orders AS o WHERE o.gift AND o.qty >= 6;
SELECT c.id FROM customers AS c
WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = c.id AND o.gift AND o.qty >= 6);

-- case: order_by_position_vs_name_total_order
-- why: ORDER BY 2, 1 names the same output columns; the primary key makes the order total
-- expect: equivalent
SELECT c.id, c.tier, c.name FROM customers AS c WHERE c.city = 'Lisbon' ORDER BY c.tier, c.id DESC;
SELECT c.id, c.tier, c.name FROM customers AS c WHERE c.city = 'Lisbon' ORDER BY 2, 1 DESC;

-- case: ordered_top_spenders_decorrelated
-- why: sorted by the primary key in both; the sum subquery becomes a grouped inner join, as NULL sums fail the filter
-- expect: equivalent
SELECT c.id, c.name, (SELECT sum(o.amount) FROM orders AS o WHERE o.customer_id = c.id) AS total
FROM customers AS c
WHERE (SELECT sum(o.amount) FROM orders AS o WHERE o.customer_id = c.id) > 4000
ORDER BY c.id;
SELECT c.id, c.name, t.total
FROM customers AS c
JOIN (SELECT o.customer_id, sum(o.amount) AS total FROM orders AS o GROUP BY o.customer_id) AS t ON t.customer_id = c.id
WHERE t.total > 4000
ORDER BY c.id;
