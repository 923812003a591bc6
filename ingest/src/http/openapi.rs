//! The orders core's part of the OpenAPI 3.1 document, generated from the handlers'
//! annotations and the request and answer types. The front door merges it with every other
//! stage's part and serves it at `/v1/openapi.json`, with Swagger UI at `/docs`.

use utoipa::OpenApi;

use super::{catalog_routes, collector_routes, order_routes, warehouse_routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopstream orders core",
        description = "Merchants, API keys, products and stock; orders with payment, cancellation, refunds and fulfilment; the click and search collector. Every error answers `{\"error\": {\"code\", \"message\"}}` with a stable `code`.",
    ),
    paths(
        catalog_routes::create_merchant,
        catalog_routes::create_api_key,
        catalog_routes::revoke_api_key,
        catalog_routes::upsert_product,
        catalog_routes::deactivate_product,
        catalog_routes::stock,
        catalog_routes::adjust_stock,
        warehouse_routes::upsert,
        warehouse_routes::list,
        order_routes::place,
        order_routes::view,
        order_routes::pay,
        order_routes::cancel,
        order_routes::change_address,
        order_routes::pack,
        order_routes::ship,
        order_routes::deliver,
        order_routes::refund,
        order_routes::history,
        collector_routes::collect,
    ),
    tags(
        (name = "catalog", description = "merchants, keys, products, stock, warehouses"),
        (name = "orders", description = "placement and everything after"),
        (name = "collector", description = "storefront clicks and searches"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The core's part of the document.
pub fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
