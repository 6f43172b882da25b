-- Q13: Customer Distribution
-- :1 = WORD1, one of special, pending, unusual, express (validation: special)
-- :2 = WORD2, one of packages, requests, accounts, deposits (validation: requests)
select
    c_count,
    count(*) as custdist
from
    (
        select
            c_custkey,
            count(o_orderkey)
        from
            customer
            left outer join orders on
                c_custkey = o_custkey
                and o_comment not like '%:1%:2%'
        group by
            c_custkey
    ) as c_orders (c_custkey, c_count)
group by
    c_count
order by
    custdist desc,
    c_count desc
