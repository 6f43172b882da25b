-- Q17: Small-Quantity-Order Revenue
-- :1 = BRAND, Brand#MN with M, N in [1, 5] (validation: Brand#23)
-- :2 = CONTAINER, a part container (validation: MED BOX)
select
    sum(l_extendedprice) / 7.0 as avg_yearly
from
    lineitem,
    part
where
    p_partkey = l_partkey
    and p_brand = ':1'
    and p_container = ':2'
    and l_quantity < (
        select
            0.2 * avg(l_quantity)
        from
            lineitem
        where
            l_partkey = p_partkey
    )
