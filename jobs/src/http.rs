//! `GET /v1/merchants/{merchant_id}/exports?period=YYYY-MM&format=xlsx|parquet[&sheet=]`:
//! the finance export of one month, built from the lake on request and streamed as it is
//! read from disk. A merchant key gets its own shop's; an admin key any.

use std::io::Read as _;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use model::api::ErrorCode;
use runtime::http::auth::{Authenticator, Caller, Keys, Limiter};
use runtime::http::{ApiError, query_pairs};
use runtime::lake::LakeFiles;
use runtime::now_ms;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use utoipa::OpenApi;

use crate::JobError;
use crate::finance::{self, FinanceConfig};
use crate::period::Period;
use crate::workbook;

#[derive(Clone)]
struct AppState {
    lake: Arc<dyn LakeFiles>,
    config: Arc<FinanceConfig>,
    /// Exports build in memory and on the CPU pool: a few at once, the rest refused.
    building: Arc<Semaphore>,
    auth: Authenticator,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Authenticator {
        state.auth.clone()
    }
}

pub(crate) fn routes(
    lake: Arc<dyn LakeFiles>,
    config: FinanceConfig,
    concurrent: usize,
    keys: Arc<dyn Keys>,
    limiter: Arc<Limiter>,
) -> Router {
    Router::new()
        .route("/v1/merchants/{merchant_id}/exports", get(export))
        .with_state(AppState {
            lake,
            config: Arc::new(config),
            building: Arc::new(Semaphore::new(concurrent.max(1))),
            auth: Authenticator { keys, limiter },
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(export),
    tags((name = "exports", description = "a merchant's monthly finance export"))
)]
struct ApiDoc;

pub(crate) fn api() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PARQUET: &str = "application/vnd.apache.parquet";
/// The Parquet names of the sheets, in workbook order.
pub(crate) const SHEET_STEMS: [&str; 10] = [
    "summary",
    "sales_lines",
    "invoices",
    "payments",
    "refunds",
    "deliveries",
    "customers",
    "tax_summary_b2c",
    "tax_summary_hsn",
    "reconciliation",
];

/// A merchant's finance export for one month (IST): every sale line with GST (CGST + SGST
/// within the merchant's state, IGST across), invoices numbered per financial year, payments,
/// refunds, deliveries, customers, the GSTR-1 B2C and HSN summaries and the reconciliation.
/// `xlsx` is the whole workbook; `parquet` one sheet (`sheet`, default `sales_lines`) with
/// amounts in minor units. A month without sales is a valid export with zero totals.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant_id}/exports",
    tag = "exports",
    params(
        ("merchant_id" = String, Path),
        ("period" = String, Query, description = "the month, `YYYY-MM` (IST); not after the current one"),
        ("format" = Option<String>, Query, description = "`xlsx` (default) or `parquet`"),
        ("sheet" = Option<String>, Query, description = "with `parquet`: summary, sales_lines (default), invoices, payments, refunds, deliveries, customers, tax_summary_b2c, tax_summary_hsn or reconciliation"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "the workbook (`application/vnd.openxmlformats-officedocument.spreadsheetml.sheet`) or one sheet as Parquet (`application/vnd.apache.parquet`), as an attachment", content_type = "application/octet-stream"),
        (status = 400, description = "`period` missing, malformed or not begun, an unknown `format` or `sheet`, or an unknown parameter (`invalid_parameter`)", body = model::api::ErrorBody),
        (status = 401, description = "no key, or an unknown one (`unauthorized`)", body = model::api::ErrorBody),
        (status = 403, description = "a merchant key asking for another shop, or a key that is neither merchant nor admin (`forbidden`)", body = model::api::ErrorBody),
        (status = 404, description = "the lake has no product or order of this merchant (`unknown_merchant`)", body = model::api::ErrorBody),
        (status = 429, description = "over the key's rate (`rate_limited`)", body = model::api::ErrorBody),
        (status = 503, description = "as many exports as allowed at once are being built (`overloaded`); retry shortly", body = model::api::ErrorBody),
    )
)]
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(merchant_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.may_read_shop(&merchant_id, "exports")?;
    let (mut period, mut parquet, mut sheet) = (None, false, None);
    for (name, value) in query_pairs(raw.as_deref())? {
        match name.as_str() {
            "period" => period = Some(Period::parse(&value).map_err(ApiError::invalid)?),
            "format" => {
                parquet = match value.as_str() {
                    "xlsx" => false,
                    "parquet" => true,
                    other => {
                        return Err(ApiError::invalid(format!(
                            "format {other:?} is not xlsx or parquet"
                        )));
                    }
                }
            }
            "sheet" => sheet = Some(value),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter {other:?}; exports take period, format and sheet"
                )));
            }
        }
    }
    let period =
        period.ok_or_else(|| ApiError::invalid("period is required, e.g. period=2026-11"))?;
    if sheet.is_some() && !parquet {
        return Err(ApiError::invalid(
            "sheet picks one sheet of a Parquet export (format=parquet); the workbook has them all",
        ));
    }
    let wanted = sheet.unwrap_or_else(|| "sales_lines".to_owned());
    if parquet && !SHEET_STEMS.contains(&wanted.as_str()) {
        return Err(ApiError::invalid(format!(
            "sheet {wanted:?} is not one of {}",
            SHEET_STEMS.join(", ")
        )));
    }
    let Ok(permit) = state.building.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "as many exports as allowed at once are being built; retry in a few seconds",
        ));
    };
    // Built in a task of its own that holds the permit: a client that goes away does not
    // free a slot while its export is still being built.
    let state = state.clone();
    let built = tokio::spawn(async move {
        let export = finance::export(
            state.lake.as_ref(),
            &state.config,
            &merchant_id,
            period,
            now_ms(),
        )
        .await?;
        let base = workbook::base_name(&export);
        let dir =
            tempfile::tempdir().map_err(|e| JobError::io("creating a scratch directory", e))?;
        let written = if parquet {
            let chosen = export
                .sheet(&wanted)
                .cloned()
                .ok_or_else(|| JobError::Invalid(format!("no sheet {wanted:?}")))?;
            let path = dir.path().join(format!("{wanted}.parquet"));
            let target = path.clone();
            runtime::cpu::run(move || workbook::write_parquet(&chosen, &target)).await??;
            (path, PARQUET, format!("{base}-{wanted}.parquet"))
        } else {
            let path = dir.path().join(format!("{base}.xlsx"));
            let target = path.clone();
            runtime::cpu::run(move || workbook::write_xlsx(&export, &target, &mut |_| {}))
                .await??;
            (path, XLSX, format!("{base}.xlsx"))
        };
        Ok::<_, JobError>((written, dir, permit))
    });
    let ((path, content_type, file_name), dir, permit) = built
        .await
        .map_err(|e| {
            to_api(JobError::Cpu(runtime::cpu::CpuError::Panicked(
                e.to_string(),
            )))
        })?
        .map_err(to_api)?;
    let length = std::fs::metadata(&path).map(|m| m.len()).ok();
    let body = stream_file(path, dir, permit).map_err(to_api)?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The file's bytes as a body, read in chunks on a blocking thread as the client takes them;
/// the scratch directory and the export's slot (`permit`) go when the last chunk is read or
/// the client leaves, so downloads in flight are bounded like builds.
fn stream_file(
    path: std::path::PathBuf,
    dir: tempfile::TempDir,
    permit: OwnedSemaphorePermit,
) -> Result<Body, JobError> {
    let mut file = std::fs::File::open(&path)
        .map_err(|e| JobError::io(format!("opening {}", path.display()), e))?;
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let _held = (dir, permit);
        loop {
            let mut chunk = vec![0u8; 256 * 1024];
            let outcome = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    Ok(Bytes::from(chunk))
                }
                Err(error) => Err(error),
            };
            let failed = outcome.is_err();
            if sender.blocking_send(outcome).is_err() || failed {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    Ok(Body::from_stream(stream))
}

fn to_api(error: JobError) -> ApiError {
    match error {
        JobError::Invalid(message) => ApiError::invalid(message),
        JobError::UnknownMerchant(message) => ApiError::new(ErrorCode::UnknownMerchant, message),
        other => {
            tracing::error!(error = %other, "finance export failed");
            ApiError::new(
                ErrorCode::Internal,
                "the export could not be built; the server log says why",
            )
        }
    }
}
