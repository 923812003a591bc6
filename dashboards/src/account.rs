//! Signing in and out: the sign-in page and its two forms (an API key, or a merchant id and
//! the password an admin set), sign-out, the language choice, and the admin's `PUT
//! /v1/merchants/{id}/dashboard-password`. Every form carries a CSRF token (the sign-in form
//! a double-submit cookie, the others the session's), and sign-ins are rate limited per
//! account and per client address.

use std::net::IpAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use model::api::ErrorCode;
use runtime::http::auth::{Caller, Role, hash_key, key_id};
use runtime::http::front::ClientAddress;
use runtime::http::{ApiError, parse_json, query_pairs};
use runtime::now_ms;
use serde::Deserialize;

use crate::i18n::Lang;
use crate::pages::{Dash, cookies, signed_in};
use crate::passwords;
use crate::render;
use crate::session::{self, Origin, SIGN_IN_COOKIE, Session};

pub(crate) async fn sign_in_form(RawQuery(raw): RawQuery) -> Response {
    let pairs = query_pairs(raw.as_deref()).unwrap_or_default();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let lang = value("lang").and_then(Lang::parse).unwrap_or_default();
    let message = match value("why") {
        Some("expired") => "Your session has ended. Sign in again.",
        Some("signed_out") => "You have signed out.",
        _ => "",
    };
    render::sign_in_page(lang, StatusCode::OK, message, false)
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    csrf: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    merchant_id: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

pub(crate) async fn sign_in(
    State(dash): State<Dash>,
    address: Option<axum::Extension<ClientAddress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |lang, status, message: &str| {
        dash.0.counters.sign_in_refusals.inc();
        render::sign_in_page(lang, status, message, false)
    };
    let Ok(form) = serde_urlencoded::from_bytes::<SignInForm>(&body) else {
        return refuse(
            Lang::En,
            StatusCode::BAD_REQUEST,
            "The sign-in form was incomplete; fill in a key, or a merchant id and password.",
        );
    };
    let lang = Lang::parse(&form.lang).unwrap_or_default();
    let expected = cookies(&headers).and_then(|c| session::cookie(c, SIGN_IN_COOKIE));
    if !expected.is_some_and(|token| session::same_token(token, &form.csrf)) {
        return refuse(
            lang,
            StatusCode::FORBIDDEN,
            "This sign-in form has expired or did not come from this site. Try again.",
        );
    }
    let too_long = [&form.key, &form.merchant_id, &form.password]
        .iter()
        .any(|field| {
            field
                .as_ref()
                .is_some_and(|f| f.len() > passwords::MAX_LENGTH)
        });
    if too_long {
        return refuse(
            lang,
            StatusCode::BAD_REQUEST,
            "A key, merchant id or password is at most 256 bytes.",
        );
    }
    // Buckets are named by hashes: what a visitor types never becomes a long-lived key.
    let account = match (&form.key, &form.merchant_id) {
        (Some(key), _) if !key.trim().is_empty() => {
            format!("key:{}", key_id(&hash_key(key.trim())))
        }
        (_, Some(merchant)) => format!("merchant:{}", key_id(&hash_key(merchant))),
        _ => String::new(),
    };
    let ip: Option<IpAddr> = address.map(|a| a.0.0.ip());
    let limiter = &dash.0.sign_ins;
    let over = [ip.map(address_bucket), Some(format!("account:{account}"))]
        .into_iter()
        .flatten()
        .find_map(|bucket| limiter.take(&bucket, Instant::now()).err());
    if let Some(wait) = over {
        let mut response = refuse(
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many sign-in attempts. Try again in {wait} s."),
        );
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let found = match (form.key, form.merchant_id, form.password) {
        (Some(key), _, _) if !key.trim().is_empty() => {
            match dash.0.keys.find(&hash_key(key.trim())).await {
                Ok(Some(caller)) => Ok(Some((caller, Origin::Key))),
                Ok(None) => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        }
        (_, Some(merchant), Some(password)) if !merchant.is_empty() => {
            // Each check costs ~19 MiB and tens of ms of a core: a few at a time.
            let Ok(_permit) = dash.0.password_checks.try_acquire() else {
                let mut response = refuse(
                    lang,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many sign-ins at this moment. Try again in a second.",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            };
            let matched = dash.0.passwords.verify(&merchant, password).await;
            Ok(matched.map(|fingerprint| {
                let caller = Caller {
                    role: Role::Merchant,
                    key_hash: format!("dashboard-password:{merchant}"),
                    merchant_id: Some(merchant.into()),
                };
                (caller, Origin::Password(fingerprint))
            }))
        }
        _ => {
            return refuse(
                lang,
                StatusCode::BAD_REQUEST,
                "Fill in a key, or a merchant id and password.",
            );
        }
    };
    let (caller, origin) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            return refuse(
                lang,
                StatusCode::UNAUTHORIZED,
                "That key, or that merchant id and password, is not right.",
            );
        }
        Err(why) => {
            return refuse(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Keys cannot be checked right now ({why}); try again shortly."),
            );
        }
    };
    if !matches!(caller.role, Role::Merchant | Role::Admin)
        || (caller.role == Role::Merchant && caller.merchant_id.is_none())
    {
        return refuse(
            lang,
            StatusCode::FORBIDDEN,
            "The dashboards take a merchant key or an admin key; this key is for a storefront or a collector.",
        );
    }
    let cookie = dash.0.sessions.start(caller, origin, lang, now_ms());
    dash.0.counters.sign_ins.inc();
    dash.0.counters.sessions.set(dash.0.sessions.held());
    let mut response = render::see_other("/dashboard");
    for value in [
        dash.0.sessions.cookie_for(&cookie),
        session::clear_cookie(SIGN_IN_COOKIE),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    back: String,
}

/// The session a form was posted from, when its CSRF token is the session's.
async fn posted_form(
    dash: &Dash,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Session, CsrfForm), Response> {
    let (id, session) = signed_in(dash, headers).await?;
    let form = serde_urlencoded::from_bytes::<CsrfForm>(body).ok();
    match form {
        Some(form) if session::same_token(&form.csrf, &session.csrf) => Ok((id, session, form)),
        _ => Err(render::error_page(
            session.lang,
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site (its security token is missing or wrong). Go back, reload the page and try again.",
        )),
    }
}

pub(crate) async fn sign_out(
    State(dash): State<Dash>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (id, _, _) = match posted_form(&dash, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    dash.0.sessions.end(&id);
    dash.0.counters.sessions.set(dash.0.sessions.held());
    let mut response = render::see_other("/signin?why=signed_out");
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie(session::COOKIE)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn language(
    State(dash): State<Dash>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (id, session, form) = match posted_form(&dash, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(lang) = Lang::parse(&form.lang) else {
        return render::error_page(
            session.lang,
            StatusCode::BAD_REQUEST,
            "The language must be en or hi.",
        );
    };
    dash.0.sessions.set_lang(&id, lang);
    // Only back to a page of ours: the field is the visitor's to change.
    let back = if form.back.starts_with("/dashboard/")
        && !form.back.contains("//")
        && !form.back.contains('\\')
    {
        form.back.as_str()
    } else {
        "/dashboard"
    };
    render::see_other(back)
}

/// A merchant's new dashboard password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPassword {
    /// 12 to 256 bytes.
    password: String,
}

/// Sets the password a merchant signs in to its dashboard with (admin key).
///
/// Kept as an Argon2id hash; the merchant's API keys keep working beside it.
#[utoipa::path(
    put,
    path = "/v1/merchants/{merchant_id}/dashboard-password",
    tag = "dashboards",
    params(("merchant_id" = String, Path)),
    request_body = NewPassword,
    security(("api_key" = [])),
    responses(
        (status = 204, description = "set"),
        (status = 400, description = "a password shorter than 12 characters or longer than 256 bytes, or a malformed body (`invalid_parameter`)", body = model::api::ErrorBody),
        (status = 401, description = "no key, or an unknown one (`unauthorized`)", body = model::api::ErrorBody),
        (status = 403, description = "not an admin key (`forbidden`)", body = model::api::ErrorBody),
    )
)]
pub(crate) async fn set_password(
    State(dash): State<Dash>,
    caller: Caller,
    Path(merchant_id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    if merchant_id.trim().is_empty() || merchant_id.len() > 128 {
        return Err(ApiError::invalid("the merchant id must be 1 to 128 bytes"));
    }
    let new: NewPassword = parse_json(&body)?;
    passwords::check_new(&new.password).map_err(ApiError::invalid)?;
    dash.0
        .passwords
        .set(&merchant_id, new.password)
        .await
        .map_err(|error| ApiError::new(ErrorCode::Internal, error.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The sign-in bucket an address counts in: an IPv4 address as itself (also when it arrives
/// IPv4-mapped), an IPv6 address by its /64, the block one subscriber is given and a guesser
/// can rotate through for free.
fn address_bucket(ip: IpAddr) -> String {
    let v6 = match ip {
        IpAddr::V4(v4) => return format!("address:{v4}"),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return format!("address:{v4}");
    }
    let [a, b, c, d, ..] = v6.segments();
    format!("address:{a:x}:{b:x}:{c:x}:{d:x}::/64")
}

/// The dashboards' series on `/metrics`.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) sign_ins: runtime::metrics::Counter,
    /// Sign-in forms refused: wrong key or password, missing token, over the rate.
    pub(crate) sign_in_refusals: runtime::metrics::Counter,
    pub(crate) sessions: runtime::metrics::Gauge,
}

impl Counters {
    pub(crate) fn registered(registry: &runtime::metrics::Registry) -> Counters {
        let job = "dashboards";
        Counters {
            sign_ins: registry.counter(
                "shopstream_dashboards_sign_ins",
                "Sign-ins that started a session.",
                job,
            ),
            sign_in_refusals: registry.counter(
                "shopstream_dashboards_sign_in_refusals",
                "Sign-in forms refused (wrong key or password, missing token, over the rate).",
                job,
            ),
            sessions: registry.gauge(
                "shopstream_dashboards_sessions",
                "Browser sessions held.",
                job,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address_bucket;

    #[test]
    fn an_ipv6_guesser_counts_once_per_64_and_ipv4_per_address() {
        let bucket = |text: &str| address_bucket(text.parse().unwrap());
        assert_eq!(
            bucket("2001:db8:1:2:aaaa::1"),
            bucket("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(bucket("2001:db8:1:2::9"), "address:2001:db8:1:2::/64");
        assert_ne!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:3::1"));
        assert_eq!(bucket("::ffff:192.0.2.7"), bucket("192.0.2.7"));
        assert_ne!(bucket("192.0.2.7"), bucket("192.0.2.8"));
    }
}
