//! The one OpenAPI document: the front door's header, every stage's paths, and the answers
//! any route can give declared once under `components.responses` and referenced from each
//! operation, instead of repeated by every stage.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use model::api::ErrorBody;

/// Answers every guarded route can give: `(status, component name, description)`.
const EVERY_ROUTE: [(&str, &str, &str); 3] = [
    (
        "400",
        "BadRequest",
        "a path or query parameter that cannot be read, e.g. an unknown parameter or a number out of range (`invalid_parameter`)",
    ),
    (
        "429",
        "RateLimited",
        "over a rate (`rate_limited`): the key's, the client address's, or the address's failed key checks; see Retry-After",
    ),
    (
        "503",
        "Overloaded",
        "the process is at its in-flight limit (`overloaded`) or the request ran past its deadline (`timeout`); retry after Retry-After",
    ),
];

/// Answers every route that takes an API key can give.
const KEYED_ROUTES: [(&str, &str, &str); 2] = [
    (
        "401",
        "Unauthorized",
        "missing, unknown or revoked API key (`unauthorized`)",
    ),
    (
        "403",
        "Forbidden",
        "the key's role or merchant may not do this (`forbidden`)",
    ),
];

/// The document's header and the API-key scheme, before any stage's paths.
pub(super) fn base() -> OpenApi {
    let mut document = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("shopstream")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every shopstream API on one port. Errors answer `{\"error\": {\"code\", \"message\"}}` with a stable `code`. The answers any route can give (401, 403, 429, 503) are declared once under `components.responses`; 413 `payload_too_large` can come from any route that takes a body.",
                ))
                .build(),
        )
        .build();
    let components = document.components.get_or_insert_with(Default::default);
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
    document
}

/// Declares the shared answers once and has every operation refer to them: 429 and 503 on
/// all, 401 and 403 on those that take a key. An answer a stage declared itself (say, its own
/// 503) is kept.
pub(super) fn declare_shared_responses(document: &mut OpenApi) {
    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    for (_, name, description) in EVERY_ROUTE.iter().chain(&KEYED_ROUTES) {
        let body = Content::new(Some(Ref::from_schema_name(ErrorBody::name())));
        components.responses.insert(
            (*name).to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(*description)
                    .content("application/json", body)
                    .build(),
            ),
        );
    }
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            refer(operation, &EVERY_ROUTE);
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                refer(operation, &KEYED_ROUTES);
            }
        }
    }
}

fn refer(operation: &mut Operation, answers: &[(&str, &str, &str)]) {
    for (status, name, _) in answers {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
    }
}
