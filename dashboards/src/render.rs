//! The templates (compiled with askama from `templates/`) and the responses built from them:
//! every page, the sign-in page, and the pages that say what went wrong. Every page is sent
//! with a content security policy that allows only this server's own scripts and styles.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::assets::Assets;
use crate::i18n::Lang;
use crate::session::{self, SIGN_IN_COOKIE};
use crate::views::{Card, Chart, Table};

/// Scripts and styles only from here, no frames, forms only to here.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// An HTML response with the pages' headers: the policy, no sniffing, no caching.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A template rendered, or a plain 500 naming the template error (never user data).
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!("dashboard template failed: {error}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn\n",
            )
                .into_response()
        }
    }
}

/// The address of an embedded file, for templates without a [`Chrome`].
pub fn asset(name: &str) -> &'static str {
    Assets::get().url(name)
}

/// One link of the page list.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: String,
    pub label: &'static str,
    pub current: bool,
}

/// What every signed-in page carries around its content.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub lang: Lang,
    /// The page's catalogue key (`today`, `sales`, ...).
    pub page: &'static str,
    pub nav: Vec<NavItem>,
    /// Who is signed in, as shown.
    pub who: String,
    /// The shop shown, if any.
    pub shop: String,
    /// For admins, the shop to keep in forms and links; empty for merchants.
    pub merchant_field: String,
    pub csrf: String,
    /// This page's address, for forms that come back to it.
    pub path: String,
    /// This page's address with the shop an admin chose: where the language form returns.
    pub back: String,
    pub needs_echarts: bool,
    pub refresh_seconds: u32,
}

impl Chrome {
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    pub fn asset(&self, name: &str) -> &'static str {
        Assets::get().url(name)
    }
}

/// The range form of the Sales, Funnel, Products and Search pages.
#[derive(Debug, Clone)]
pub struct RangeForm {
    pub from: String,
    pub to: String,
    /// `(value, label, selected)`; empty where the page has no grain.
    pub grains: Vec<(&'static str, &'static str, bool)>,
}

#[derive(Template)]
#[template(path = "page.html")]
pub struct Page {
    pub chrome: Chrome,
    pub range: Option<RangeForm>,
    pub notice: Option<String>,
    /// The panel's address when it refreshes itself.
    pub refresh: Option<String>,
    /// The panel, rendered.
    pub panel: String,
    /// An admin without a shop chosen gets a form to choose one.
    pub choose_shop: bool,
}

#[derive(Template)]
#[template(path = "panel.html")]
pub struct Panel {
    pub lang: Lang,
    pub cards: Vec<Card>,
    pub charts: Vec<Chart>,
    pub tables: Vec<Table>,
    pub footnote: String,
}

/// One month of the Exports page.
#[derive(Debug, Clone)]
pub struct ExportMonth {
    pub label: String,
    pub xlsx: String,
    pub sales_lines: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "exports.html")]
pub struct Exports {
    pub lang: Lang,
    pub months: Vec<ExportMonth>,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn {
    pub lang: Lang,
    pub csrf: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub lang: Lang,
    pub status: u16,
    pub message: String,
}

/// The sign-in page, saying `message` (empty: nothing went wrong), with a fresh form token.
pub fn sign_in_page(
    lang: Lang,
    status: StatusCode,
    message: &str,
    clear_session: bool,
) -> Response {
    let csrf = session::random_hex(16);
    let mut response = page(
        status,
        &SignIn {
            lang,
            csrf: csrf.clone(),
            message: message.to_owned(),
        },
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(SIGN_IN_COOKIE, &csrf, 3_600)) {
        headers.append(header::SET_COOKIE, value);
    }
    if clear_session
        && let Ok(value) = HeaderValue::from_str(&session::clear_cookie(session::COOKIE))
    {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

/// A page that says what went wrong, with `status`, and a way back.
pub fn error_page(lang: Lang, status: StatusCode, message: impl Into<String>) -> Response {
    page(
        status,
        &ErrorPage {
            lang,
            status: status.as_u16(),
            message: message.into(),
        },
    )
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
