-- Warehouses merchants registered through PUT /v1/warehouses/{warehouse_id}. Their ids are one
-- namespace on the platform, as on the compacted logistics topic the same change is published
-- to; `body` is that event's payload (model::payload::WarehouseUpserted) as JSON.
CREATE TABLE warehouses (
    warehouse_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The delivery promise the shopper was shown when the order was placed: the end of the
-- promised IST day, UTC ms. NULL when the core runs without the serviceability model or it
-- could not promise; shipping then needs an explicit promised_at.
ALTER TABLE orders ADD COLUMN promised_at BIGINT;
