-- case: not_in_vs_not_exists_nullable_foreign_key
-- why: NOT IN yields no rows once the subquery returns a NULL; differs when a gift order with qty 10 has product_id NULL
-- expect: not_equivalent
-- base: identical
SELECT p.id FROM products AS p
WHERE p.id NOT IN (SELECT o.product_id FROM orders AS o WHERE o.gift AND o.qty = 10);
SELECT p.id FROM products AS p
WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.product_id = p.id AND o.gift AND o.qty = 10);

-- case: not_in_vs_not_exists_keyless_column
-- why: visits.customer_id is nullable; differs when a 'support' visit since June 2024 has customer_id NULL
-- expect: not_equivalent
-- base: identical
SELECT c.id FROM customers AS c
WHERE c.id NOT IN (SELECT v.customer_id FROM visits AS v WHERE v.page = 'support' AND v.seen >= date '2024-06-01');
SELECT c.id FROM customers AS c
WHERE NOT EXISTS (SELECT 1 FROM visits AS v WHERE v.customer_id = c.id AND v.page = 'support' AND v.seen >= date '2024-06-01');

-- case: count_nullable_column_vs_count_star
-- why: count(discount) skips NULLs; differs when orders.discount is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.customer_id, count(o.discount) AS n FROM orders AS o GROUP BY o.customer_id;
SELECT o.customer_id, count(*) AS n FROM orders AS o GROUP BY o.customer_id;

-- case: count_star_vs_count_key_over_left_join
-- why: count(*) counts the NULL-extended row as 1; differs when a customer has no orders (1 vs 0)
-- expect: not_equivalent
-- base: identical
SELECT c.id, count(*) AS n_orders FROM customers AS c LEFT JOIN orders AS o ON o.customer_id = c.id GROUP BY c.id;
SELECT c.id, count(o.id) AS n_orders FROM customers AS c LEFT JOIN orders AS o ON o.customer_id = c.id GROUP BY c.id;

-- case: left_join_vs_inner_join_childless_customer
-- why: the inner join drops customers without orders; differs when a customer has no orders
-- expect: not_equivalent
-- base: identical
SELECT c.id, o.id AS order_id FROM customers AS c LEFT JOIN orders AS o ON o.customer_id = c.id WHERE c.tier = 3;
SELECT c.id, o.id AS order_id FROM customers AS c JOIN orders AS o ON o.customer_id = c.id WHERE c.tier = 3;

-- case: left_join_vs_inner_join_nullable_foreign_key
-- why: the inner join drops orders without a product; differs when orders.product_id is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.id, p.category FROM orders AS o LEFT JOIN products AS p ON p.id = o.product_id WHERE o.qty = 4;
SELECT o.id, p.category FROM orders AS o JOIN products AS p ON p.id = o.product_id WHERE o.qty = 4;

-- case: join_elimination_nullable_foreign_key
-- why: an inner join on a nullable foreign key filters; differs when orders.product_id is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.id, o.amount FROM orders AS o JOIN products AS p ON p.id = o.product_id WHERE o.qty = 6;
SELECT o.id, o.amount FROM orders AS o WHERE o.qty = 6;

-- case: distinct_dropped_on_keyless_table
-- why: visits has no key; differs when visits holds duplicate rows
-- expect: not_equivalent
-- base: identical
SELECT DISTINCT v.customer_id, v.page FROM visits AS v WHERE v.seen >= date '2024-09-01';
SELECT v.customer_id, v.page FROM visits AS v WHERE v.seen >= date '2024-09-01';

-- case: union_vs_union_all_keyless_table
-- why: UNION removes duplicates, UNION ALL keeps them; differs when a 'home' or 'docs' visit row is duplicated
-- expect: not_equivalent
-- base: identical
SELECT v.customer_id, v.seen FROM visits AS v WHERE v.page = 'home'
UNION
SELECT v.customer_id, v.seen FROM visits AS v WHERE v.page = 'docs';
SELECT v.customer_id, v.seen FROM visits AS v WHERE v.page = 'home'
UNION ALL
SELECT v.customer_id, v.seen FROM visits AS v WHERE v.page = 'docs';

-- case: or_to_union_without_key
-- why: UNION also merges rows that were duplicates in the original; differs when a matching visit row is duplicated
-- expect: not_equivalent
-- base: identical
SELECT v.customer_id, v.page FROM visits AS v WHERE v.page = 'blog' OR v.seen < date '2024-02-01';
SELECT v.customer_id, v.page FROM visits AS v WHERE v.page = 'blog'
UNION
SELECT v.customer_id, v.page FROM visits AS v WHERE v.seen < date '2024-02-01';

-- case: in_subquery_to_join_duplicating_rows
-- why: the join repeats a customer once per matching visit; differs when a customer has two 'checkout' visits
-- expect: not_equivalent
-- base: identical
SELECT c.id, c.name FROM customers AS c
WHERE c.id IN (SELECT v.customer_id FROM visits AS v WHERE v.page = 'checkout');
SELECT c.id, c.name FROM customers AS c JOIN visits AS v ON v.customer_id = c.id WHERE v.page = 'checkout';

-- case: aggregate_over_fan_out_join
-- why: joining visits multiplies each order per matching visit; differs when a customer has two 'checkout' visits
-- expect: not_equivalent
-- base: identical
SELECT c.id, sum(o.amount) AS total
FROM customers AS c JOIN orders AS o ON o.customer_id = c.id
WHERE EXISTS (SELECT 1 FROM visits AS v WHERE v.customer_id = c.id AND v.page = 'checkout')
GROUP BY c.id;
SELECT c.id, sum(o.amount) AS total
FROM customers AS c JOIN orders AS o ON o.customer_id = c.id
JOIN visits AS v ON v.customer_id = c.id AND v.page = 'checkout'
GROUP BY c.id;

-- case: count_distinct_vs_count_keyless_table
-- why: count(*) counts duplicate and NULL-customer visits; differs when visits has duplicate rows or NULL customer_id
-- expect: not_equivalent
-- base: identical
SELECT v.page, count(DISTINCT v.customer_id) AS visitors FROM visits AS v GROUP BY v.page;
SELECT v.page, count(*) AS visitors FROM visits AS v GROUP BY v.page;

-- case: decorrelated_count_without_coalesce
-- why: the count bug: count over no rows is 0 but the LEFT JOIN gives NULL; differs when a customer has no orders
-- expect: not_equivalent
-- base: identical
SELECT c.id, (SELECT count(*) FROM orders AS o WHERE o.customer_id = c.id) AS n_orders FROM customers AS c;
SELECT c.id, a.n AS n_orders
FROM customers AS c
LEFT JOIN (SELECT o.customer_id, count(*) AS n FROM orders AS o GROUP BY o.customer_id) AS a ON a.customer_id = c.id;

-- case: coalesced_max_subquery_to_inner_join
-- why: the inner join drops a product without orders that the original shows with 0; differs when a product is never ordered
-- expect: not_equivalent
-- base: identical
SELECT p.id, COALESCE((SELECT max(o.amount) FROM orders AS o WHERE o.product_id = p.id), 0) AS biggest FROM products AS p;
SELECT p.id, m.biggest
FROM products AS p
JOIN (SELECT o.product_id, max(o.amount) AS biggest FROM orders AS o GROUP BY o.product_id) AS m ON m.product_id = p.id;

-- case: coalesce_moved_inside_sum_over_whole_table
-- why: without GROUP BY an empty input still yields one row: 0 vs NULL; differs when orders is empty
-- expect: not_equivalent
-- base: identical
SELECT COALESCE(sum(o.discount), 0) AS total_discount FROM orders AS o;
SELECT sum(COALESCE(o.discount, 0)) AS total_discount FROM orders AS o;

-- case: coalesce_added_to_avg_of_possibly_empty_set
-- why: avg over no rows is NULL, not 0; differs when no product has category 'toys' (NULL category or empty table)
-- expect: not_equivalent
-- base: identical
SELECT avg(p.price) AS avg_price FROM products AS p WHERE p.category = 'toys';
SELECT COALESCE(avg(p.price), 0) AS avg_price FROM products AS p WHERE p.category = 'toys';

-- case: avg_vs_sum_over_count_star
-- why: avg ignores NULLs but count(*) does not; differs when orders.discount is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.customer_id, avg(o.discount) AS avg_discount FROM orders AS o GROUP BY o.customer_id;
SELECT o.customer_id, sum(o.discount) / count(*) AS avg_discount FROM orders AS o GROUP BY o.customer_id;

-- case: greater_than_all_vs_greater_than_max
-- why: > ALL is true on an empty set and unknown with a NULL, > (SELECT max) is neither; differs when a gift order has discount NULL or there are no gift orders
-- expect: not_equivalent
-- base: identical
SELECT p.id FROM products AS p WHERE p.price > ALL (SELECT o.discount * 100 FROM orders AS o WHERE o.gift);
SELECT p.id FROM products AS p WHERE p.price > (SELECT max(o.discount * 100) FROM orders AS o WHERE o.gift);

-- case: integer_division_cast_vs_numeric_division
-- why: qty / 2 truncates before the cast; differs when orders.qty is odd (CHECK qty > 0 allows 3)
-- expect: not_equivalent
-- base: identical
SELECT o.id, (o.qty / 2)::numeric AS half_qty FROM orders AS o WHERE o.customer_id <= 20;
SELECT o.id, o.qty / 2.0 AS half_qty FROM orders AS o WHERE o.customer_id <= 20;

-- case: integer_division_inside_vs_outside_sum
-- why: sum(qty / 2) truncates every term, sum(qty) / 2 only the total; differs when some orders.qty are odd
-- expect: not_equivalent
-- base: identical
SELECT o.customer_id, sum(o.qty / 2) AS half_units FROM orders AS o GROUP BY o.customer_id;
SELECT o.customer_id, sum(o.qty) / 2 AS half_units FROM orders AS o GROUP BY o.customer_id;

-- case: ge_vs_gt_on_date_boundary
-- why: the bound is included in one and excluded in the other; differs when an order is placed on 2024-03-01
-- expect: not_equivalent
-- base: identical
SELECT o.id, o.placed FROM orders AS o WHERE o.placed >= date '2024-03-01';
SELECT o.id, o.placed FROM orders AS o WHERE o.placed > date '2024-03-01';

-- case: ge_vs_gt_on_amount_boundary
-- why: the bound is included in one and excluded in the other; differs when an order amount is exactly 300
-- expect: not_equivalent
-- base: identical
SELECT o.id, o.amount FROM orders AS o WHERE o.amount >= 300;
SELECT o.id, o.amount FROM orders AS o WHERE o.amount > 300;

-- case: lt_vs_le_on_price_boundary
-- why: the bound is excluded in one and included in the other; differs when a product costs exactly 20
-- expect: not_equivalent
-- base: identical
SELECT p.id, p.price FROM products AS p WHERE p.price < 20;
SELECT p.id, p.price FROM products AS p WHERE p.price <= 20;

-- case: extract_year_vs_between_one_day_too_far
-- why: BETWEEN includes its upper bound 2024-01-01; differs when an order is placed on 2024-01-01
-- expect: not_equivalent
-- base: identical
SELECT o.id FROM orders AS o WHERE extract(year FROM o.placed) = 2023;
SELECT o.id FROM orders AS o WHERE o.placed BETWEEN date '2023-01-01' AND date '2024-01-01';

-- case: not_equal_vs_is_distinct_from_nullable
-- why: discount <> 0.10 is unknown for NULL, IS DISTINCT FROM is true; differs when orders.discount is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.id FROM orders AS o WHERE o.discount <> 0.10;
SELECT o.id FROM orders AS o WHERE o.discount IS DISTINCT FROM 0.10;

-- case: not_equal_vs_negation_or_is_null
-- why: the candidate also keeps customers whose city is NULL; differs when customers.city is NULL
-- expect: not_equivalent
-- base: identical
SELECT c.id FROM customers AS c WHERE c.city <> 'Paris';
SELECT c.id FROM customers AS c WHERE NOT (c.city = 'Paris') OR c.city IS NULL;

-- case: tautology_on_nullable_column_removed
-- why: x > v OR x <= v is unknown for NULL x; differs when orders.discount is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.id FROM orders AS o WHERE o.discount > 0.05 OR o.discount <= 0.05;
SELECT o.id FROM orders AS o;

-- case: is_not_null_filter_dropped
-- why: the candidate keeps customers without a city; differs when customers.city is NULL
-- expect: not_equivalent
-- base: identical
SELECT c.id, c.city FROM customers AS c WHERE c.city IS NOT NULL AND c.tier = 1;
SELECT c.id, c.city FROM customers AS c WHERE c.tier = 1;

-- case: coalesce_equals_vs_equals_nullable
-- why: COALESCE maps a NULL discount to 0 and keeps the row; differs when orders.discount is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.id FROM orders AS o WHERE COALESCE(o.discount, 0) = 0;
SELECT o.id FROM orders AS o WHERE o.discount = 0;

-- case: anti_join_tests_nullable_column_for_null
-- why: a matched order with a NULL discount passes the IS NULL test; differs when a gift order with qty 10 has discount NULL
-- expect: not_equivalent
-- base: identical
SELECT p.id FROM products AS p
WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.product_id = p.id AND o.gift AND o.qty = 10);
SELECT p.id FROM products AS p
LEFT JOIN orders AS o ON o.product_id = p.id AND o.gift AND o.qty = 10
WHERE o.discount IS NULL;

-- case: window_on_nullable_key_vs_equi_join
-- why: PARTITION BY groups NULL product_ids together but = never matches NULL; differs when orders.product_id is NULL
-- expect: not_equivalent
-- base: identical
SELECT o.id, count(*) OVER (PARTITION BY o.product_id) AS product_orders FROM orders AS o;
SELECT o.id, t.product_orders
FROM orders AS o
JOIN (SELECT product_id, count(*) AS product_orders FROM orders GROUP BY product_id) AS t ON t.product_id = o.product_id;

-- case: distinct_dropped_on_nullable_unique_column
-- why: UNIQUE admits many NULLs; differs when two customers have email NULL
-- expect: not_equivalent
-- base: identical
SELECT DISTINCT c.email FROM customers AS c;
SELECT c.email FROM customers AS c;

-- case: distinct_foreign_keys_vs_parent_keys
-- why: the parents include customers without orders; differs when a customer has no orders
-- expect: not_equivalent
-- base: identical
SELECT DISTINCT o.customer_id FROM orders AS o;
SELECT c.id AS customer_id FROM customers AS c;

-- case: filter_moved_from_left_join_on_to_where
-- why: in ON the filter only blanks the partner, in WHERE it drops the customer; differs when a customer has no order with qty 10
-- expect: not_equivalent
-- base: identical
SELECT c.id, o.id AS order_id FROM customers AS c LEFT JOIN orders AS o ON o.customer_id = c.id AND o.qty = 10;
SELECT c.id, o.id AS order_id FROM customers AS c LEFT JOIN orders AS o ON o.customer_id = c.id WHERE o.qty = 10;

-- case: semi_join_conditions_split_across_two_exists
-- why: the candidate tests seen on any visit of the customer, not on the 'pricing' one; differs when a customer visits pricing early and another page late
-- expect: not_equivalent
-- base: different
SELECT c.id FROM customers AS c
WHERE c.id IN (SELECT v.customer_id FROM visits AS v WHERE v.page = 'pricing' AND v.seen < date '2024-04-01');
SELECT c.id FROM customers AS c
WHERE EXISTS (SELECT 1 FROM visits AS v WHERE v.customer_id = c.id AND v.page = 'pricing')
  AND EXISTS (SELECT 1 FROM visits AS v WHERE v.customer_id = c.id AND v.seen < date '2024-04-01');

-- case: wrong_join_key
-- why: joins orders to customers through product_id instead of customer_id
-- expect: not_equivalent
-- base: different
SELECT o.id, c.name FROM orders AS o JOIN customers AS c ON c.id = o.customer_id WHERE o.gift;
SELECT o.id, c.name FROM orders AS o JOIN customers AS c ON c.id = o.product_id WHERE o.gift;

-- case: wrong_literal
-- why: filters on another tier
-- expect: not_equivalent
-- base: different
SELECT c.id, c.name FROM customers AS c WHERE c.tier = 1;
SELECT c.id, c.name FROM customers AS c WHERE c.tier = 2;

-- case: order_direction_reversed
-- why: same rows, but the original ORDER BY fixes ascending ids
-- expect: not_equivalent
-- base: different
SELECT c.id, c.name FROM customers AS c WHERE c.city = 'Vienna' ORDER BY c.id;
SELECT c.id, c.name FROM customers AS c WHERE c.city = 'Vienna' ORDER BY c.id DESC;

-- case: or_to_union_all_with_overlap
-- why: orders matching both branches appear twice under UNION ALL
-- expect: not_equivalent
-- base: different
SELECT o.id, o.amount FROM orders AS o WHERE o.qty = 10 OR o.discount = 0.15;
SELECT o.id, o.amount FROM orders AS o WHERE o.qty = 10
UNION ALL
SELECT o.id, o.amount FROM orders AS o WHERE o.discount = 0.15;

-- case: having_aggregate_moved_to_row_filter
-- why: a condition on the group's sum is not a condition on each row
-- expect: not_equivalent
-- base: different
SELECT o.customer_id, count(*) AS n FROM orders AS o GROUP BY o.customer_id HAVING sum(o.amount) > 4000;
SELECT o.customer_id, count(*) AS n FROM orders AS o WHERE o.amount > 400 GROUP BY o.customer_id;

-- case: min_instead_of_max
-- why: another aggregate
-- expect: not_equivalent
-- base: different
SELECT o.customer_id, max(o.amount) AS biggest FROM orders AS o GROUP BY o.customer_id;
SELECT o.customer_id, min(o.amount) AS biggest FROM orders AS o GROUP BY o.customer_id;

-- case: rank_vs_row_number_with_ties
-- why: rank repeats on ties of qty within a customer, row_number does not
-- expect: not_equivalent
-- base: different
SELECT o.id, rank() OVER (PARTITION BY o.customer_id ORDER BY o.qty) AS position FROM orders AS o;
SELECT o.id, row_number() OVER (PARTITION BY o.customer_id ORDER BY o.qty, o.id) AS position FROM orders AS o;

-- case: intersect_instead_of_union
-- why: keeps only customers who saw both pages instead of either
-- expect: not_equivalent
-- base: different
SELECT v.customer_id FROM visits AS v WHERE v.page = 'home' AND v.seen < date '2024-05-01'
UNION
SELECT v.customer_id FROM visits AS v WHERE v.page = 'docs' AND v.seen < date '2024-05-01';
SELECT v.customer_id FROM visits AS v WHERE v.page = 'home' AND v.seen < date '2024-05-01'
INTERSECT
SELECT v.customer_id FROM visits AS v WHERE v.page = 'docs' AND v.seen < date '2024-05-01';

-- case: date_trunc_month_vs_range_including_next_month_start
-- why: BETWEEN includes 2024-04-01, which date_trunc puts in April
-- expect: not_equivalent
-- base: different
SELECT o.id FROM orders AS o WHERE date_trunc('month', o.placed) = date '2024-03-01';
SELECT o.id FROM orders AS o WHERE o.placed BETWEEN date '2024-03-01' AND date '2024-04-01';

-- case: window_partition_on_wrong_column
-- why: totals per product instead of per customer
-- expect: not_equivalent
-- base: different
SELECT o.id, sum(o.amount) OVER (PARTITION BY o.customer_id) AS total FROM orders AS o;
SELECT o.id, sum(o.amount) OVER (PARTITION BY o.product_id) AS total FROM orders AS o;

-- case: count_orders_vs_count_distinct_customers
-- why: counts orders per city instead of customers per city
-- expect: not_equivalent
-- base: different
SELECT c.city, count(DISTINCT o.customer_id) AS n FROM orders AS o JOIN customers AS c ON c.id = o.customer_id GROUP BY c.city;
SELECT c.city, count(*) AS n FROM orders AS o JOIN customers AS c ON c.id = o.customer_id GROUP BY c.city;

-- case: shape_integer_vs_numeric_column
-- why: deliberate shape mismatch: half_qty is integer in one and numeric in the other (values agree on the even base qty)
-- expect: shape_mismatch
-- base: different
SELECT o.id, o.qty / 2 AS half_qty FROM orders AS o WHERE o.customer_id <= 20;
SELECT o.id, o.qty / 2.0 AS half_qty FROM orders AS o WHERE o.customer_id <= 20;

-- case: shape_column_renamed
-- why: deliberate shape mismatch: same values, but the second column is named customer_name in the candidate
-- expect: shape_mismatch
-- base: different
SELECT c.id, c.name FROM customers AS c WHERE c.tier = 3;
SELECT c.id, c.name AS customer_name FROM customers AS c WHERE c.tier = 3;

-- case: shape_extra_column
-- why: deliberate shape mismatch: the candidate returns one column more
-- expect: shape_mismatch
-- base: different
SELECT c.id FROM customers AS c WHERE c.city = 'Madrid';
SELECT c.id, c.tier FROM customers AS c WHERE c.city = 'Madrid';
