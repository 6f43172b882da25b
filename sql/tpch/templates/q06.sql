-- Q6: Forecasting Revenue Change
-- :1 = DATE, January 1st of a year in [1993, 1997] (validation: 1994-01-01)
-- :2 = DISCOUNT in [0.02, 0.09] (validation: 0.06)
-- :3 = QUANTITY in [24, 25] (validation: 24)
select
    sum(l_extendedprice * l_discount) as revenue
from
    lineitem
where
    l_shipdate >= date ':1'
    and l_shipdate < date ':1' + interval '1 year'
    and l_discount between :2 - 0.01 and :2 + 0.01
    and l_quantity < :3
