//! The `/v1` API described as OpenAPI 3.1, generated from the handlers' annotations and the
//! request and answer types, served at `/v1/openapi.json`, with Swagger UI at `/docs`. The UI
//! is compiled in (utoipa-swagger-ui's `vendored` feature): nothing is fetched at build or
//! run time.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{CoreState, catalog_routes, collector_routes, order_routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopstream orders core",
        description = "Merchants, API keys, products and stock; orders with payment, cancellation, refunds and fulfilment; the click and search collector. Every error answers `{\"error\": {\"code\", \"message\"}}` with a stable `code`.",
    ),
    paths(
        catalog_routes::create_merchant,
        catalog_routes::create_api_key,
        catalog_routes::upsert_product,
        catalog_routes::deactivate_product,
        catalog_routes::stock,
        catalog_routes::adjust_stock,
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
    modifiers(&ApiKeyAuth),
    tags(
        (name = "catalog", description = "merchants, keys, products, stock"),
        (name = "orders", description = "placement and everything after"),
        (name = "collector", description = "storefront clicks and searches"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Every route takes `Authorization: Bearer <API key>`.
#[derive(Debug)]
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from POST /v1/merchants or POST /v1/api-keys; the admin key is in <data_dir>/core/admin.key.",
                    ))
                    .build(),
            ),
        );
    }
}

/// `/v1/openapi.json` and the Swagger UI at `/docs`; neither needs a key.
pub(super) fn routes() -> axum::Router<CoreState> {
    axum::Router::new().merge(SwaggerUi::new("/docs").url("/v1/openapi.json", ApiDoc::openapi()))
}
