//! Merchants, API keys, products and stock.

use model::api::ErrorCode;
use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use model::payload::ProductUpserted;
use model::{MerchantId, Money, Pincode, ProductId, WarehouseId};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::auth::{self, Caller, Role};
use super::{ApiError, CoreState, check_length, parse_json, require};
use crate::catalog::{self, Merchant, Product};
use crate::domain::{CancellationPolicy, DEFAULT_RADIUS_KM};

pub(super) fn routes() -> Router<CoreState> {
    Router::new()
        .route("/v1/merchants", post(create_merchant))
        .route("/v1/api-keys", post(create_api_key))
        .route("/v1/api-keys/{key_id}", delete(revoke_api_key))
        .route(
            "/v1/products/{product_id}",
            put(upsert_product).delete(deactivate_product),
        )
        .route(
            "/v1/products/{product_id}/stock",
            get(stock).post(adjust_stock),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct MerchantRequest {
    merchant_id: MerchantId,
    name: String,
    /// Set for merchants that deliver only near their store.
    hyperlocal: Option<Hyperlocal>,
    /// Refund tiers; the default is 70 % within 10 min, 40 % within 30 min.
    cancellation_policy: Option<CancellationPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub(super) struct Hyperlocal {
    store_pincode: Pincode,
    radius_km: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MerchantCreated {
    merchant_id: MerchantId,
    /// The merchant's first API key. Shown once: only its hash is stored.
    api_key: String,
}

/// Creates a merchant (admin) and returns its first API key, shown once.
#[utoipa::path(
    post,
    path = "/v1/merchants",
    tag = "catalog",
    request_body = MerchantRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "created", body = MerchantCreated),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 409, description = "the merchant exists (`already_exists`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn create_merchant(
    State(state): State<CoreState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<MerchantCreated>), ApiError> {
    require(&caller, &[Role::Admin])?;
    let request: MerchantRequest = parse_json(&body)?;
    if request.name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "name must not be empty",
        ));
    }
    if request.merchant_id.as_str() == model::MARKETPLACE {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!(
                "merchant_id {:?} is reserved for marketplace-wide searches",
                model::MARKETPLACE
            ),
        ));
    }
    let hyperlocal = match request.hyperlocal {
        Some(Hyperlocal {
            store_pincode,
            radius_km,
        }) => {
            let radius = radius_km.unwrap_or(DEFAULT_RADIUS_KM);
            if !(radius.is_finite() && radius > 0.0) {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("hyperlocal.radius_km must be a positive number, got {radius}"),
                ));
            }
            if state.rules.pincodes.get(store_pincode).is_none() {
                return Err(ApiError::new(
                    ErrorCode::UnknownPincode,
                    format!("store pincode {store_pincode} is not in the India Post directory"),
                ));
            }
            Some((store_pincode, radius))
        }
        None => None,
    };
    let exists = sqlx::query("SELECT 1 FROM merchants WHERE merchant_id = $1")
        .bind(request.merchant_id.as_str())
        .fetch_optional(state.store.pool())
        .await
        .map_err(crate::store::StoreError::from)?
        .is_some();
    if exists {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("merchant {} already exists", request.merchant_id),
        ));
    }
    let merchant = Merchant {
        merchant_id: request.merchant_id.clone(),
        name: request.name,
        hyperlocal,
        cancellation_policy: request.cancellation_policy.unwrap_or_default(),
    };
    let now = state.now();
    catalog::upsert_merchant(&state.store, &merchant, now).await?;
    let api_key = auth::create_key(
        &state.store,
        Role::Merchant,
        Some(&merchant.merchant_id),
        auth::Origin::Api,
        now,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(MerchantCreated {
            merchant_id: merchant.merchant_id,
            api_key,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct KeyRequest {
    role: Role,
    /// Required for merchant and collector keys; optional for storefront keys (bound to one
    /// shop, or unbound for a marketplace front end); never for admin keys.
    merchant_id: Option<MerchantId>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyCreated {
    /// Names the key for `DELETE /v1/api-keys/{key_id}`; cannot be used to call.
    key_id: String,
    role: Role,
    merchant_id: Option<MerchantId>,
    /// Shown once: only its hash is stored.
    api_key: String,
}

/// Creates an API key (admin); the key is shown once, only its SHA-256 is kept.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "catalog",
    request_body = KeyRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "created", body = KeyCreated),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "the merchant named does not exist (`unknown_merchant`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn create_api_key(
    State(state): State<CoreState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    require(&caller, &[Role::Admin])?;
    let request: KeyRequest = parse_json(&body)?;
    match (request.role, &request.merchant_id) {
        (Role::Merchant | Role::Collector, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "a merchant or collector key needs merchant_id",
            ));
        }
        (Role::Admin, Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "admin keys belong to no merchant; drop merchant_id",
            ));
        }
        _ => {}
    }
    if let Some(merchant_id) = &request.merchant_id {
        let known = sqlx::query("SELECT 1 FROM merchants WHERE merchant_id = $1")
            .bind(merchant_id.as_str())
            .fetch_optional(state.store.pool())
            .await
            .map_err(crate::store::StoreError::from)?
            .is_some();
        if !known {
            return Err(ApiError::new(
                ErrorCode::UnknownMerchant,
                format!("merchant {merchant_id} does not exist"),
            ));
        }
    }
    let api_key = auth::create_key(
        &state.store,
        request.role,
        request.merchant_id.as_ref(),
        auth::Origin::Api,
        state.now(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            key_id: auth::key_id(&auth::hash_key(&api_key)).to_owned(),
            role: request.role,
            merchant_id: request.merchant_id,
            api_key,
        }),
    ))
}

/// Revokes an API key by its id: it stops working at once. An admin key may revoke any key; a
/// merchant key only keys bound to its own merchant.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{key_id}",
    tag = "catalog",
    params(("key_id" = String, Path, description = "the `key_id` returned when the key was made")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 404, description = "no such key that this caller may revoke (`unknown_key`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn revoke_api_key(
    State(state): State<CoreState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, &[Role::Admin, Role::Merchant])?;
    if auth::revoke(&state.store, &key_id, &caller, state.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::UnknownKey,
            format!("no key {key_id:?} that this key may revoke"),
        ))
    }
}

/// The merchant a merchant key belongs to; other keys are refused.
pub(super) fn own_merchant(caller: &Caller) -> Result<MerchantId, ApiError> {
    require(caller, &[Role::Merchant])?;
    caller
        .merchant_id
        .clone()
        .ok_or_else(|| ApiError::internal("merchant key without a merchant"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct ProductRequest {
    #[schema(max_length = 100)]
    category: String,
    #[schema(max_length = 100)]
    brand: String,
    #[schema(max_length = 300)]
    title: String,
    #[serde(default)]
    #[schema(max_length = 20000)]
    description: String,
    /// At most 64, names up to 64 characters, values up to 1,000.
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    price: Money,
    /// Where its stock is kept; `main` when omitted.
    warehouse_id: Option<WarehouseId>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ProductSaved {
    product_id: ProductId,
    merchant_id: MerchantId,
    active: bool,
}

/// Lists or updates one of the calling merchant's products; emits `catalog.product_upserted`.
#[utoipa::path(
    put,
    path = "/v1/products/{product_id}",
    tag = "catalog",
    request_body = ProductRequest,
    params(("product_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "saved", body = ProductSaved),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 409, description = "the id is another shop's (`product_id_taken`); the owner is not named", body = model::api::ErrorBody),
    )
)]
pub(super) async fn upsert_product(
    State(state): State<CoreState>,
    caller: Caller,
    Path(product_id): Path<String>,
    body: Bytes,
) -> Result<Json<ProductSaved>, ApiError> {
    let merchant_id = own_merchant(&caller)?;
    let request: ProductRequest = parse_json(&body)?;
    for (field, value) in [
        ("category", &request.category),
        ("brand", &request.brand),
        ("title", &request.title),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("{field} must not be empty"),
            ));
        }
    }
    if request.price.amount_minor < 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "price.amount_minor must not be negative",
        ));
    }
    check_product_lengths(&request)?;
    let product_id = ProductId::new(product_id);
    let product = Product {
        merchant_id: merchant_id.clone(),
        listing: ProductUpserted {
            product_id: product_id.clone(),
            category: request.category,
            brand: request.brand,
            title: request.title,
            description: request.description,
            attributes: request.attributes,
            price: request.price,
        },
    };
    let warehouse = request
        .warehouse_id
        .unwrap_or_else(|| WarehouseId::new("main"));
    catalog::upsert_product(&state.store, &product, &warehouse, state.now()).await?;
    Ok(Json(ProductSaved {
        product_id,
        merchant_id,
        active: true,
    }))
}

/// Every text field within `model::limits`, so the event fits a Kafka message.
fn check_product_lengths(request: &ProductRequest) -> Result<(), ApiError> {
    use model::limits::*;
    check_length("category", &request.category, NAME_CHARS)?;
    check_length("brand", &request.brand, NAME_CHARS)?;
    check_length("title", &request.title, TITLE_CHARS)?;
    check_length("description", &request.description, DESCRIPTION_CHARS)?;
    if request.attributes.len() > ATTRIBUTES {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!(
                "attributes has {} entries; at most {ATTRIBUTES} are accepted",
                request.attributes.len()
            ),
        ));
    }
    for (name, value) in &request.attributes {
        check_length("an attribute name", name, ATTRIBUTE_NAME_CHARS)?;
        check_length(&format!("attributes.{name}"), value, ATTRIBUTE_VALUE_CHARS)?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeactivateQuery {
    reason: Option<String>,
}

/// Withdraws a product from sale; emits `catalog.product_deactivated`.
#[utoipa::path(
    delete,
    path = "/v1/products/{product_id}",
    tag = "catalog",
    params(("product_id" = String, Path), ("reason" = Option<String>, Query)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "withdrawn", body = ProductSaved),
        (status = 404, description = "`unknown_product`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn deactivate_product(
    State(state): State<CoreState>,
    caller: Caller,
    Path(product_id): Path<String>,
    Query(query): Query<DeactivateQuery>,
) -> Result<Json<ProductSaved>, ApiError> {
    let merchant_id = own_merchant(&caller)?;
    let product_id = ProductId::new(product_id);
    let reason = query
        .reason
        .unwrap_or_else(|| "withdrawn by merchant".to_owned());
    check_length("reason", &reason, model::limits::REASON_CHARS)?;
    catalog::deactivate_product(
        &state.store,
        &merchant_id,
        &product_id,
        &reason,
        state.now(),
    )
    .await?;
    Ok(Json(ProductSaved {
        product_id,
        merchant_id,
        active: false,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct StockRequest {
    /// Units received (positive) or written off (negative).
    delta: i64,
    #[schema(max_length = 500)]
    reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct StockAnswer {
    product_id: ProductId,
    on_hand: i64,
    reserved: i64,
    available: i64,
}

/// Adjusts stock on hand by a signed delta (receipt, count, correction).
#[utoipa::path(
    post,
    path = "/v1/products/{product_id}/stock",
    tag = "catalog",
    request_body = StockRequest,
    params(("product_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "the new level", body = StockAnswer),
        (status = 400, description = "invalid JSON, naming the field (`invalid_json`)", body = model::api::ErrorBody),
        (status = 404, description = "`unknown_product`", body = model::api::ErrorBody),
        (status = 422, description = "would leave less on hand than is reserved (`invalid_stock_change`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn adjust_stock(
    State(state): State<CoreState>,
    caller: Caller,
    Path(product_id): Path<String>,
    body: Bytes,
) -> Result<Json<StockAnswer>, ApiError> {
    let merchant_id = own_merchant(&caller)?;
    let request: StockRequest = parse_json(&body)?;
    check_length("reason", &request.reason, model::limits::REASON_CHARS)?;
    if request.delta == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "delta must not be 0",
        ));
    }
    let product_id = ProductId::new(product_id);
    let level = catalog::adjust_stock(
        &state.store,
        &merchant_id,
        &product_id,
        request.delta,
        &request.reason,
        state.now(),
    )
    .await?;
    Ok(Json(StockAnswer {
        product_id,
        on_hand: level.on_hand(),
        reserved: level.reserved(),
        available: level.available(),
    }))
}

/// Stock on hand, reserved and available. A key bound to one merchant sees its own products only.
#[utoipa::path(
    get,
    path = "/v1/products/{product_id}/stock",
    tag = "catalog",
    params(("product_id" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "the level", body = StockAnswer),
        (status = 404, description = "`unknown_product`", body = model::api::ErrorBody),
    )
)]
pub(super) async fn stock(
    State(state): State<CoreState>,
    caller: Caller,
    Path(product_id): Path<String>,
) -> Result<Json<StockAnswer>, ApiError> {
    require(&caller, &[Role::Admin, Role::Merchant, Role::Storefront])?;
    let product_id = ProductId::new(product_id);
    // A key bound to one shop sees that shop's products only.
    if let Some(bound) = caller.bound_merchant() {
        let owner: Option<String> =
            sqlx::query("SELECT merchant_id FROM products WHERE product_id = $1")
                .bind(product_id.as_str())
                .fetch_optional(state.store.pool())
                .await
                .map_err(crate::store::StoreError::from)?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(crate::store::StoreError::from)?;
        if owner.as_deref() != Some(bound.as_str()) {
            return Err(ApiError::new(
                ErrorCode::UnknownProduct,
                format!("product {product_id} does not exist"),
            ));
        }
    }
    let level = catalog::stock_level(&state.store, &product_id).await?;
    Ok(Json(StockAnswer {
        product_id,
        on_hand: level.on_hand(),
        reserved: level.reserved(),
        available: level.available(),
    }))
}
