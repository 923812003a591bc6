-- One row per order line, with where its order, payment, refunds and shipment stand.
CREATE VIEW order_facts AS
WITH order_state AS (
    SELECT order_id,
           split_part(last_value(event_type ORDER BY event_time, event_id), '.', 2) AS order_status,
           max(CASE WHEN event_type = 'order.confirmed' THEN event_time END) AS confirmed_at,
           max(CASE WHEN event_type = 'order.shipped' THEN event_time END) AS shipped_at,
           max(CASE WHEN event_type = 'order.delivered' THEN event_time END) AS delivered_at,
           max(CASE WHEN event_type = 'order.cancelled' THEN event_time END) AS cancelled_at
    FROM orders
    GROUP BY order_id
),
payment_state AS (
    SELECT order_id,
           last_value(payment_id ORDER BY event_time, event_id) AS payment_id,
           split_part(last_value(event_type ORDER BY event_time, event_id), '.', 2) AS payment_status,
           last_value(provider ORDER BY event_time, event_id) AS payment_provider
    FROM payments
    WHERE event_type IN ('payment.captured', 'payment.failed')
    GROUP BY order_id
),
refund_state AS (
    SELECT order_id,
           count(*) AS refund_count,
           sum(amount_minor) AS refunded_minor,
           max(refund_id) AS last_refund_id
    FROM refunds
    GROUP BY order_id
),
shipment_state AS (
    SELECT order_id,
           max(shipment_id) AS shipment_id,
           max(courier_id) AS courier_id,
           max(promised_at) AS promised_at,
           min(CASE WHEN event_type = 'shipment.created' THEN event_time END) AS shipment_created_at,
           max(CASE WHEN event_type = 'shipment.delivered' THEN event_time END) AS shipment_delivered_at
    FROM shipments
    GROUP BY order_id
)
SELECT l.event_date AS order_date,
       l.event_time AS placed_at,
       l.merchant_id,
       l.order_id,
       l.line_number,
       l.customer_id,
       l.session_id,
       l.product_id,
       l.quantity,
       l.unit_price_minor,
       l.unit_price_currency AS currency,
       l.line_total_minor,
       l.delivery_pincode,
       o.order_status,
       o.confirmed_at,
       o.shipped_at,
       o.delivered_at,
       o.cancelled_at,
       p.payment_id,
       p.payment_status,
       p.payment_provider,
       coalesce(r.refund_count, 0) AS order_refund_count,
       coalesce(r.refunded_minor, 0) AS order_refunded_minor,
       r.last_refund_id,
       s.shipment_id,
       s.courier_id,
       s.promised_at,
       s.shipment_created_at,
       s.shipment_delivered_at
FROM order_lines l
LEFT JOIN order_state o ON o.order_id = l.order_id
LEFT JOIN payment_state p ON p.order_id = l.order_id
LEFT JOIN refund_state r ON r.order_id = l.order_id
LEFT JOIN shipment_state s ON s.order_id = l.order_id
