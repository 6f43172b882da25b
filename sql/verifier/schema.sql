-- Verifier acceptance schema: a small shop with deterministic "clean" data.
--
-- Load as a superuser:  psql -v ON_ERROR_STOP=1 -f schema.sql   (idempotent: drops first)
--
-- The constraints are part of the fixture: equivalent.sql pairs may rely on them
-- (PK, NOT NULL FK, CHECK) and not_equivalent.sql traps live in what they allow.
-- The data is deliberately clean, so that the classic traps return identical rows here:
--   * nullable columns hold no NULLs;
--   * every customer has orders, every product is ordered;
--   * visits (no key) has no duplicate rows, and (customer_id, page) is unique in it;
--   * orders.qty is always even (integer-division traps);
--   * orders.placed lies an even number of days after 2023-01-01, so no order sits on
--     2024-01-01 or 2024-03-01; amounts and prices never are whole numbers (e.g. 300, 20).

DROP TABLE IF EXISTS public.visits, public.orders, public.products, public.customers;

CREATE TABLE public.customers (
    id      integer PRIMARY KEY,
    name    text    NOT NULL,
    email   text    UNIQUE,
    city    text,
    tier    integer NOT NULL CHECK (tier BETWEEN 1 AND 3),
    created date    NOT NULL
);

CREATE TABLE public.products (
    id       integer PRIMARY KEY,
    name     text          NOT NULL,
    category text,
    price    numeric(10,2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE public.orders (
    id          bigint        PRIMARY KEY,
    customer_id integer       NOT NULL REFERENCES public.customers (id),
    product_id  integer       REFERENCES public.products (id),
    qty         integer       NOT NULL CHECK (qty > 0),
    amount      numeric(12,2) NOT NULL CHECK (amount >= 0),
    discount    numeric(4,2)  CHECK (discount >= 0 AND discount < 1),
    placed      date          NOT NULL,
    shipped     timestamp,
    gift        boolean       NOT NULL DEFAULT false
);

-- A log: no key, no foreign key, every column nullable.
CREATE TABLE public.visits (
    customer_id integer,
    page        text,
    seen        date
);

CREATE INDEX ON public.orders (customer_id);
CREATE INDEX ON public.orders (product_id);
CREATE INDEX ON public.orders (placed);
CREATE INDEX ON public.visits (customer_id);

INSERT INTO public.customers (id, name, email, city, tier, created)
SELECT g,
       'Customer ' || g,
       'customer' || g || '@example.com',
       (ARRAY['Berlin', 'Paris', 'Madrid', 'Rome', 'Vienna', 'Lisbon'])[1 + g % 6],
       1 + g % 3,
       date '2022-01-03' + g * 5
FROM generate_series(1, 200) AS g;

INSERT INTO public.products (id, name, category, price)
SELECT g,
       'Product ' || g,
       (ARRAY['books', 'toys', 'garden', 'kitchen', 'sports'])[1 + g % 5],
       (g * 37) % 90 + 0.99
FROM generate_series(1, 60) AS g;

INSERT INTO public.orders (id, customer_id, product_id, qty, amount, discount, placed, shipped, gift)
SELECT s.g, s.customer_id, s.product_id, s.qty,
       s.qty * p.price,
       ((s.g / 3) % 4) * 0.05,
       s.placed,
       (s.placed + (1 + s.g % 5)) + time '10:30',
       s.g % 7 = 0
FROM (
    SELECT g,
           1 + (g - 1) % 200 AS customer_id,
           1 + (g * 7) % 60 AS product_id,
           2 * (1 + (g / 7) % 5) AS qty,
           date '2023-01-01' + 2 * ((g * 11) % 365) AS placed
    FROM generate_series(1, 2400) AS g
) AS s
JOIN public.products AS p ON p.id = s.product_id;

INSERT INTO public.visits (customer_id, page, seen)
SELECT 1 + (g - 1) % 200,
       (ARRAY['home', 'pricing', 'docs', 'blog', 'checkout', 'support'])[1 + (g - 1) / 200],
       date '2024-01-01' + (g * 13) % 300
FROM generate_series(1, 1200) AS g;

ANALYZE;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC;
