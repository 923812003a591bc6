-- {identity_primary_key} is replaced per database (see store::migrate).
-- The orders core. Money is BIGINT minor units; times are BIGINT UTC ms; booleans are 0/1 so
-- the same queries run on SQLite.
CREATE TABLE merchants (
    merchant_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- Set for hyperlocal merchants only: orders must deliver within radius_km of it.
    store_pincode BIGINT,
    radius_km DOUBLE PRECISION,
    -- JSON array of {within_ms, percent}; see domain::cancellation.
    cancellation_policy TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    category TEXT NOT NULL,
    brand TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON object of category attributes.
    attributes TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    active BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE stock (
    product_id TEXT PRIMARY KEY REFERENCES products (product_id),
    warehouse_id TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    CHECK (reserved >= 0 AND on_hand >= reserved)
);

CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    delivery_pincode BIGINT NOT NULL,
    currency TEXT NOT NULL,
    taxable_minor BIGINT NOT NULL,
    gst_minor BIGINT NOT NULL,
    total_minor BIGINT NOT NULL,
    fx TEXT,
    placed_at BIGINT NOT NULL,
    reservation_expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at);
CREATE INDEX orders_by_expiry ON orders (status, reservation_expires_at);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    line_no BIGINT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (product_id),
    quantity BIGINT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    gross_minor BIGINT NOT NULL,
    taxable_minor BIGINT NOT NULL,
    gst_minor BIGINT NOT NULL,
    gst_bps BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Events written in the same transaction as the rows they describe; the relay publishes them
-- in seq order and stamps sent_at.
CREATE TABLE outbox (
    seq {identity_primary_key},
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

-- One row per Idempotency-Key: the request's hash and, once done, the answer given.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
