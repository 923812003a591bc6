//! A client of the orders core's `/v1` API and the shop most tests start from.

use anyhow::{Result, ensure};
use reqwest::Method as M;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::core::RunningCore;

/// A JSON client of the core's `/v1` API.
#[derive(Debug)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn new(core: &RunningCore) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: core.base.clone(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, Value, reqwest::header::HeaderMap)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value, headers))
    }

    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value> {
        let (status, value, _) = self.call(method, path, Some(key), body, headers).await?;
        ensure!(status.is_success(), "{path}: {status} {value}");
        Ok(value)
    }
}

/// The machine code of an error answer.
pub fn code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("<no code>")
}

/// A merchant with one product (10 units) and a storefront key; returns (merchant key,
/// storefront key).
pub async fn shop(client: &Client, admin: &str) -> Result<(String, String)> {
    let created = client
        .ok(M::POST, "/v1/merchants", admin, Some(json!({"merchant_id": "m-1", "name": "Chai Point", "hyperlocal": {"store_pincode": "560001"}})), &[])
        .await?;
    let merchant = key_of(&created)?;
    let storefront = storefront(client, admin).await?;
    let product = json!({
        "category": "grocery", "brand": "Chai Point", "title": "Masala chai 250 g",
        "price": {"amount_minor": 24_000, "currency": "INR"}
    });
    client
        .ok(M::PUT, "/v1/products/p-chai", &merchant, Some(product), &[])
        .await?;
    let stock = client
        .ok(
            M::POST,
            "/v1/products/p-chai/stock",
            &merchant,
            Some(json!({"delta": 10, "reason": "receipt"})),
            &[],
        )
        .await?;
    ensure!(stock["available"] == 10, "{stock}");
    Ok((merchant, storefront))
}

/// An order for `quantity` units of the shop's product, from customer `c-7`.
pub fn order_body(quantity: u32) -> Value {
    json!({
        "merchant_id": "m-1", "customer_id": "c-7", "session_id": null,
        "delivery_pincode": "560042", "currency": "INR",
        "lines": [{"product_id": "p-chai", "quantity": quantity}]
    })
}

/// The key a creation answer carries.
pub fn key_of(created: &Value) -> Result<String> {
    created["api_key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no api_key in {created}"))
}

/// Creates merchant `id` (admin) and returns its first key.
pub async fn merchant(client: &Client, admin: &str, id: &str) -> Result<String> {
    let created = client
        .ok(
            M::POST,
            "/v1/merchants",
            admin,
            Some(json!({"merchant_id": id, "name": id})),
            &[],
        )
        .await?;
    key_of(&created)
}

/// A storefront key of the marketplace (bound to no shop).
pub async fn storefront(client: &Client, admin: &str) -> Result<String> {
    let created = client
        .ok(
            M::POST,
            "/v1/api-keys",
            admin,
            Some(json!({"role": "storefront"})),
            &[],
        )
        .await?;
    key_of(&created)
}

/// Lists `product` (a kurta at ₹499) for the merchant whose `key` this is, kept at
/// `warehouse` (`main` when `None`) with `units` in stock.
pub async fn listed(
    client: &Client,
    key: &str,
    product: &str,
    warehouse: Option<&str>,
    units: i64,
) -> Result<()> {
    let listing = json!({
        "category": "apparel", "brand": "Fabindia", "title": format!("Kurta {product}"),
        "price": {"amount_minor": 49_900, "currency": "INR"}, "warehouse_id": warehouse
    });
    client
        .ok(
            M::PUT,
            &format!("/v1/products/{product}"),
            key,
            Some(listing),
            &[],
        )
        .await?;
    client
        .ok(
            M::POST,
            &format!("/v1/products/{product}/stock"),
            key,
            Some(json!({"delta": units, "reason": "receipt"})),
            &[],
        )
        .await?;
    Ok(())
}

/// Pays `order_id` with the storefront's key and packs it with the merchant's: ready to ship.
pub async fn paid_and_packed(
    client: &Client,
    order_id: &str,
    storefront: &str,
    merchant: &str,
) -> Result<()> {
    for (step, key) in [("pay", storefront), ("pack", merchant)] {
        client
            .ok(
                M::POST,
                &format!("/v1/orders/{order_id}/{step}"),
                key,
                None,
                &[],
            )
            .await?;
    }
    Ok(())
}
