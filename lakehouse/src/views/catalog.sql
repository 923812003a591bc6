-- The catalog as it is now: each product's latest upsert, and whether a later deactivation
-- took it off sale.
CREATE VIEW catalog AS
WITH upserts AS (
    SELECT *, row_number() OVER (PARTITION BY product_id ORDER BY event_time DESC, event_id DESC) AS newest
    FROM catalog_history
    WHERE event_type = 'catalog.product_upserted'
),
changes AS (
    SELECT product_id, event_type, event_time,
           row_number() OVER (PARTITION BY product_id ORDER BY event_time DESC, event_id DESC) AS newest
    FROM catalog_history
)
SELECT u.product_id, u.merchant_id, u.category, u.brand, u.title, u.description, u.attributes,
       u.price_minor, u.price_currency,
       c.event_type <> 'catalog.product_deactivated' AS active,
       c.event_time AS updated_at
FROM upserts u
JOIN changes c ON c.product_id = u.product_id AND c.newest = 1
WHERE u.newest = 1
