-- Q12: Shipping Modes and Order Priority
-- :1 = SHIPMODE1 (validation: MAIL)
-- :2 = SHIPMODE2, different from SHIPMODE1 (validation: SHIP)
-- :3 = DATE, January 1st of a year in [1993, 1997] (validation: 1994-01-01)
select
    l_shipmode,
    sum(case
        when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1
        else 0
    end) as high_line_count,
    sum(case
        when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1
        else 0
    end) as low_line_count
from
    orders,
    lineitem
where
    o_orderkey = l_orderkey
    and l_shipmode in (':1', ':2')
    and l_commitdate < l_receiptdate
    and l_shipdate < l_commitdate
    and l_receiptdate >= date ':3'
    and l_receiptdate < date ':3' + interval '1 year'
group by
    l_shipmode
order by
    l_shipmode
