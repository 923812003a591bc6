-- What happens to an order after it is placed: payments, refunds, shipments; plus the API keys
-- that may call the core and the notifications already delivered.
CREATE TABLE payments (
    payment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    provider TEXT NOT NULL,
    -- captured | failed
    status TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);

CREATE TABLE refunds (
    refund_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    payment_id TEXT NOT NULL REFERENCES payments (payment_id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_by_order ON refunds (order_id);

CREATE TABLE shipments (
    shipment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE REFERENCES orders (order_id),
    warehouse_id TEXT NOT NULL,
    courier_id TEXT NOT NULL,
    origin_pincode BIGINT NOT NULL,
    destination_pincode BIGINT NOT NULL,
    promised_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);

-- Only a SHA-256 of each key is kept; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    key_prefix TEXT NOT NULL,
    -- admin | merchant | storefront
    role TEXT NOT NULL,
    merchant_id TEXT REFERENCES merchants (merchant_id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Order events a notifier has already delivered, so a redelivered event notifies nobody twice.
CREATE TABLE notifications_sent (
    source_event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (source_event_id, channel)
);
