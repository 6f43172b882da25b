-- Optional: the usual indexes on TPC-H foreign-key columns (not part of the papers' setting).
-- lineitem(l_orderkey) and partsupp(ps_partkey) are already covered by the primary keys.

CREATE INDEX IF NOT EXISTS nation_n_regionkey_idx      ON nation (n_regionkey);
CREATE INDEX IF NOT EXISTS supplier_s_nationkey_idx    ON supplier (s_nationkey);
CREATE INDEX IF NOT EXISTS customer_c_nationkey_idx    ON customer (c_nationkey);
CREATE INDEX IF NOT EXISTS partsupp_ps_suppkey_idx     ON partsupp (ps_suppkey);
CREATE INDEX IF NOT EXISTS orders_o_custkey_idx        ON orders (o_custkey);
CREATE INDEX IF NOT EXISTS lineitem_l_partkey_idx      ON lineitem (l_partkey);
CREATE INDEX IF NOT EXISTS lineitem_l_suppkey_idx      ON lineitem (l_suppkey);
CREATE INDEX IF NOT EXISTS lineitem_l_partkey_suppkey_idx ON lineitem (l_partkey, l_suppkey);
