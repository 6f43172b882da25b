-- Demo e-commerce database for LASER: deterministic data generated inside PostgreSQL.
--
-- Run with: psql -v ON_ERROR_STOP=1 -f sql/demo/schema.sql  (connected to an existing database).
-- Tables land in the current schema; rerunning drops and recreates them.
-- Pseudo-randomness comes from hashint8extended(row number, seed), so every run produces the same
-- rows regardless of evaluation order or parallelism.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DROP TABLE IF EXISTS events CASCADE;
DROP TABLE IF EXISTS orders CASCADE;
DROP TABLE IF EXISTS products CASCADE;
DROP TABLE IF EXISTS users CASCADE;

-- rnd(g, seed, n): deterministic pseudo-random integer in [0, n).
CREATE FUNCTION pg_temp.rnd(g bigint, seed bigint, n bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (hashint8extended(g, seed) & 9223372036854775807) % n $$;

CREATE TABLE users (
    id          integer PRIMARY KEY,
    email       text NOT NULL,
    name        text NOT NULL,
    country     char(2) NOT NULL,
    signup_date date NOT NULL,
    referred_by integer REFERENCES users (id),
    phone       text,
    is_active   boolean NOT NULL
);

CREATE TABLE products (
    id       integer PRIMARY KEY,
    name     text NOT NULL,
    category text NOT NULL,
    brand    text,
    price    numeric(10, 2) NOT NULL
);

CREATE TABLE orders (
    id          integer PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id),
    product_id  integer NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    status      text NOT NULL,
    coupon_code text,
    created_at  timestamp NOT NULL,
    shipped_at  timestamp
);

CREATE TABLE events (
    id         bigint PRIMARY KEY,
    user_id    integer REFERENCES users (id),
    session_id bigint NOT NULL,
    event_type text NOT NULL,
    page       text NOT NULL,
    referrer   text,
    user_agent text NOT NULL,
    created_at timestamptz NOT NULL
);

INSERT INTO users (id, email, name, country, signup_date, referred_by, phone, is_active)
SELECT g,
       'user' || g || '@example.' || (ARRAY['com', 'org', 'net', 'de'])[1 + pg_temp.rnd(g, 1, 4)],
       'User ' || g,
       (ARRAY['US', 'DE', 'FR', 'GB', 'IN', 'BR', 'JP', 'CA', 'ES', 'IT'])[1 + pg_temp.rnd(g, 2, 10)],
       DATE '2020-01-01' + pg_temp.rnd(g, 3, 1460)::integer,
       CASE WHEN g > 100 AND pg_temp.rnd(g, 4, 5) = 0 THEN 1 + pg_temp.rnd(g, 5, g - 1)::integer END,
       CASE WHEN pg_temp.rnd(g, 6, 3) > 0 THEN '+1-555-' || lpad(pg_temp.rnd(g, 7, 10000)::text, 4, '0') END,
       pg_temp.rnd(g, 8, 10) > 0
FROM generate_series(1, 10000) AS g;

INSERT INTO products (id, name, category, brand, price)
SELECT g,
       'Product ' || g,
       (ARRAY['books', 'electronics', 'garden', 'toys', 'clothing', 'sports', 'beauty', 'grocery',
              'home', 'automotive', 'music', 'office'])[1 + pg_temp.rnd(g, 11, 12)],
       CASE WHEN pg_temp.rnd(g, 12, 8) > 0 THEN 'Brand ' || (1 + pg_temp.rnd(g, 13, 60)) END,
       round((1 + pg_temp.rnd(g, 14, 50000)) / 100.0, 2)
FROM generate_series(1, 1000) AS g;

INSERT INTO orders (id, user_id, product_id, quantity, amount, status, coupon_code, created_at, shipped_at)
SELECT g, o.user_id, o.product_id, o.quantity,
       p.price * o.quantity,
       o.status,
       CASE WHEN pg_temp.rnd(g, 25, 10) = 0 THEN 'SAVE' || (5 * (1 + pg_temp.rnd(g, 26, 4))) END,
       o.created_at,
       CASE WHEN o.status IN ('shipped', 'delivered')
            THEN o.created_at + make_interval(hours => 6 + pg_temp.rnd(g, 27, 120)::integer) END
FROM (
    SELECT g,
           1 + pg_temp.rnd(g, 21, 10000)::integer AS user_id,
           1 + pg_temp.rnd(g, 22, 1000)::integer AS product_id,
           1 + pg_temp.rnd(g, 23, 4)::integer AS quantity,
           (ARRAY['pending', 'paid', 'shipped', 'delivered', 'delivered', 'delivered', 'cancelled',
                  'refunded'])[1 + pg_temp.rnd(g, 24, 8)] AS status,
           TIMESTAMP '2022-01-01' + make_interval(secs => pg_temp.rnd(g, 28, 94608000)::double precision)
               AS created_at
    FROM generate_series(1, 500000) AS g
) AS o
JOIN products AS p ON p.id = o.product_id;

INSERT INTO events (id, user_id, session_id, event_type, page, referrer, user_agent, created_at)
SELECT g,
       CASE WHEN pg_temp.rnd(g, 31, 10) > 0 THEN 1 + pg_temp.rnd(g, 32, 10000)::integer END,
       1 + pg_temp.rnd(g, 33, 250000),
       e.event_type,
       CASE e.event_type
           WHEN 'search' THEN '/search?q=term' || pg_temp.rnd(g, 34, 500)
           WHEN 'checkout' THEN '/checkout/step' || (1 + pg_temp.rnd(g, 35, 3))
           ELSE '/product/' || (1 + pg_temp.rnd(g, 36, 1000))
       END,
       CASE WHEN pg_temp.rnd(g, 37, 3) = 0
            THEN (ARRAY['https://www.google.com/', 'https://news.example.org/', 'https://social.example.com/feed'])[1 + pg_temp.rnd(g, 38, 3)]
       END,
       (ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36',
              'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15',
              'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148',
              'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0'])[1 + pg_temp.rnd(g, 39, 4)],
       TIMESTAMPTZ '2023-01-01 00:00:00+00' + make_interval(secs => pg_temp.rnd(g, 40, 63072000)::double precision)
FROM (
    SELECT g,
           (ARRAY['view', 'view', 'view', 'view', 'click', 'click', 'search', 'add_to_cart',
                  'checkout', 'purchase'])[1 + pg_temp.rnd(g, 30, 10)] AS event_type
    FROM generate_series(1, 1000000) AS g
) AS e;

-- The indexes a real application would have: foreign keys, time ranges, unique logins.
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_country_idx ON users (country);
CREATE INDEX products_category_idx ON products (category);
CREATE INDEX orders_user_id_idx ON orders (user_id);
CREATE INDEX orders_product_id_idx ON orders (product_id);
CREATE INDEX orders_created_at_idx ON orders (created_at);
CREATE INDEX events_user_id_idx ON events (user_id);
CREATE INDEX events_created_at_idx ON events (created_at);

-- VACUUM sets hint bits and the visibility map now, so the first timed runs do not pay for them.
VACUUM (ANALYZE) users;
VACUUM (ANALYZE) products;
VACUUM (ANALYZE) orders;
VACUUM (ANALYZE) events;
