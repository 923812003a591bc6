-- Per merchant, day and currency: orders placed, units, GMV, refunds issued that day, and net.
-- GMV counts on the day an order was placed and refunds on the day they were issued, as a
-- merchant's statement does. Amounts are in minor units (paise for INR).
CREATE VIEW daily_sales AS
WITH sales AS (
    SELECT merchant_id, event_date AS day, unit_price_currency AS currency,
           count(DISTINCT order_id) AS orders,
           sum(quantity) AS units,
           sum(line_total_minor) AS gmv_minor
    FROM order_lines
    GROUP BY merchant_id, event_date, unit_price_currency
),
refunded AS (
    SELECT merchant_id, event_date AS day, amount_currency AS currency,
           count(*) AS refunds,
           sum(amount_minor) AS refunds_minor
    FROM refunds
    GROUP BY merchant_id, event_date, amount_currency
)
SELECT coalesce(s.merchant_id, r.merchant_id) AS merchant_id,
       coalesce(s.day, r.day) AS day,
       coalesce(s.currency, r.currency) AS currency,
       coalesce(s.orders, 0) AS orders,
       coalesce(s.units, 0) AS units,
       coalesce(s.gmv_minor, 0) AS gmv_minor,
       coalesce(r.refunds, 0) AS refunds,
       coalesce(r.refunds_minor, 0) AS refunds_minor,
       coalesce(s.gmv_minor, 0) - coalesce(r.refunds_minor, 0) AS net_minor
FROM sales s
FULL OUTER JOIN refunded r
    ON s.merchant_id = r.merchant_id AND s.day = r.day AND s.currency = r.currency
