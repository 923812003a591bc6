//! A merchant's warehouses (and hyperlocal stores): where its stock ships from, when it
//! dispatches, and how long handling takes. Serviceability promises from them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use model::api::ErrorCode;
use model::calendar::{IstDate, Weekday};
use model::payload::WarehouseUpserted;
use model::{Pincode, WarehouseId};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::catalog_routes::own_merchant;
use super::{ApiError, CoreState, check_length, parse_json};
use crate::logistics;

/// A warehouse id's longest form.
const WAREHOUSE_ID_CHARS: usize = 64;
/// Handling and restocking beyond these are typing mistakes, not logistics.
const MAX_HANDLING_DAYS: u32 = 30;
const MAX_RESTOCK_DAYS: u32 = 365;
const MAX_HOLIDAYS: usize = 366;

pub(super) fn routes() -> Router<CoreState> {
    Router::new()
        .route("/v1/warehouses", get(list))
        .route("/v1/warehouses/{warehouse_id}", put(upsert))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct WarehouseRequest {
    pincode: Pincode,
    /// Orders placed before this time of day (IST, `HH:MM`) start handling that day if it is a
    /// working day, later ones the next working day; `14:00` when omitted.
    #[schema(value_type = Option<String>, example = "14:00")]
    cutoff: Option<String>,
    /// Working days from the start of handling to the courier's pickup; 1 when omitted.
    #[schema(maximum = 30)]
    handling_days: Option<u32>,
    /// Days it dispatches (`mon`..`sun`); Monday to Saturday when omitted.
    #[schema(value_type = Option<Vec<String>>, example = json!(["mon", "tue", "wed", "thu", "fri", "sat"]))]
    working_days: Option<Vec<Weekday>>,
    /// Dates (`YYYY-MM-DD`, IST) it does not dispatch, besides national holidays.
    #[serde(default)]
    #[schema(value_type = Vec<String>, max_items = 366)]
    holidays: Vec<IstDate>,
    /// A hyperlocal store: delivers with its own riders, the same day, only this far (km).
    radius_km: Option<f64>,
    /// Working days a restock takes to arrive; 7 when omitted.
    #[schema(maximum = 365)]
    restock_lead_days: Option<u32>,
}

/// A warehouse as registered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Warehouse {
    #[schema(value_type = String)]
    warehouse_id: WarehouseId,
    pincode: Pincode,
    /// `HH:MM`, IST.
    cutoff: String,
    handling_days: u32,
    #[schema(value_type = Vec<String>)]
    working_days: Vec<Weekday>,
    #[schema(value_type = Vec<String>)]
    holidays: Vec<IstDate>,
    radius_km: Option<f64>,
    restock_lead_days: u32,
}

impl From<WarehouseUpserted> for Warehouse {
    fn from(w: WarehouseUpserted) -> Self {
        Warehouse {
            warehouse_id: w.warehouse_id,
            pincode: w.pincode,
            cutoff: format!("{:02}:{:02}", w.cutoff_minute / 60, w.cutoff_minute % 60),
            handling_days: w.handling_days,
            working_days: w.working_days,
            holidays: w.holidays,
            radius_km: w.radius_km,
            restock_lead_days: w.restock_lead_days,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Warehouses {
    warehouses: Vec<Warehouse>,
}

/// Registers or changes one of the calling merchant's warehouses; emits
/// `logistics.warehouse_upserted` on the compacted logistics topic. Products name it as their
/// `warehouse_id`.
#[utoipa::path(
    put,
    path = "/v1/warehouses/{warehouse_id}",
    tag = "catalog",
    request_body = WarehouseRequest,
    params(("warehouse_id" = String, Path, description = "up to 64 letters, digits, `-`, `_` or `.`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "saved", body = Warehouse),
        (status = 400, description = "invalid JSON or a field out of range, naming it (`invalid_json`, `invalid_parameter`)", body = model::api::ErrorBody),
        (status = 409, description = "the id is another shop's (`warehouse_id_taken`); the owner is not named", body = model::api::ErrorBody),
        (status = 422, description = "the pincode is not in India Post's directory (`unknown_pincode`)", body = model::api::ErrorBody),
    )
)]
pub(super) async fn upsert(
    State(state): State<CoreState>,
    caller: Caller,
    Path(warehouse_id): Path<String>,
    body: Bytes,
) -> Result<Json<Warehouse>, ApiError> {
    let merchant_id = own_merchant(&caller)?;
    let request: WarehouseRequest = parse_json(&body)?;
    let warehouse = validate(&state, warehouse_id, request)?;
    logistics::upsert_warehouse(&state.store, &merchant_id, &warehouse, state.now()).await?;
    Ok(Json(warehouse.into()))
}

/// The calling merchant's warehouses, by id.
#[utoipa::path(
    get,
    path = "/v1/warehouses",
    tag = "catalog",
    security(("api_key" = [])),
    responses((status = 200, description = "the merchant's warehouses", body = Warehouses))
)]
pub(super) async fn list(
    State(state): State<CoreState>,
    caller: Caller,
) -> Result<Json<Warehouses>, ApiError> {
    let merchant_id = own_merchant(&caller)?;
    let found = logistics::warehouses(&state.store, &merchant_id).await?;
    Ok(Json(Warehouses {
        warehouses: found.into_iter().map(Warehouse::from).collect(),
    }))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, message)
}

fn validate(
    state: &CoreState,
    warehouse_id: String,
    request: WarehouseRequest,
) -> Result<WarehouseUpserted, ApiError> {
    check_length("warehouse_id", &warehouse_id, WAREHOUSE_ID_CHARS)?;
    if warehouse_id.is_empty()
        || !warehouse_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(format!(
            "warehouse_id {warehouse_id:?} must be letters, digits, '-', '_' or '.'"
        )));
    }
    if state.rules.pincodes.get(request.pincode).is_none() {
        return Err(ApiError::new(
            ErrorCode::UnknownPincode,
            format!(
                "pincode {} is not in the India Post directory",
                request.pincode
            ),
        ));
    }
    let cutoff_minute = match request.cutoff.as_deref() {
        None => 14 * 60,
        Some(text) => parse_cutoff(text).ok_or_else(|| {
            invalid(format!(
                "cutoff {text:?} must be a time of day HH:MM (IST), e.g. \"14:00\""
            ))
        })?,
    };
    let handling_days = request.handling_days.unwrap_or(1);
    if handling_days > MAX_HANDLING_DAYS {
        return Err(invalid(format!(
            "handling_days is {handling_days}; at most {MAX_HANDLING_DAYS}"
        )));
    }
    let working_days = request
        .working_days
        .unwrap_or_else(|| Weekday::MON_TO_SAT.to_vec());
    if working_days.is_empty() {
        return Err(invalid(
            "working_days must name at least one day".to_owned(),
        ));
    }
    if let Some(day) = working_days
        .iter()
        .enumerate()
        .find_map(|(i, day)| working_days[..i].contains(day).then_some(day))
    {
        return Err(invalid(format!("working_days names {day:?} twice")));
    }
    if request.holidays.len() > MAX_HOLIDAYS {
        return Err(invalid(format!(
            "holidays has {} dates; at most {MAX_HOLIDAYS}",
            request.holidays.len()
        )));
    }
    if let Some(radius) = request.radius_km
        && (radius.is_nan() || radius <= 0.0 || radius.is_infinite())
    {
        return Err(invalid(format!(
            "radius_km must be a positive number of kilometres, got {radius}"
        )));
    }
    let restock_lead_days = request.restock_lead_days.unwrap_or(7);
    if restock_lead_days > MAX_RESTOCK_DAYS {
        return Err(invalid(format!(
            "restock_lead_days is {restock_lead_days}; at most {MAX_RESTOCK_DAYS}"
        )));
    }
    Ok(WarehouseUpserted {
        warehouse_id: WarehouseId::new(warehouse_id),
        pincode: request.pincode,
        cutoff_minute,
        handling_days,
        working_days,
        holidays: request.holidays,
        radius_km: request.radius_km,
        restock_lead_days,
    })
}

/// Minutes after midnight of `HH:MM`.
fn parse_cutoff(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

#[cfg(test)]
mod tests {
    use super::parse_cutoff;

    #[test]
    fn a_cutoff_is_a_time_of_day() {
        assert_eq!(parse_cutoff("14:00"), Some(840));
        assert_eq!(parse_cutoff("00:00"), Some(0));
        assert_eq!(parse_cutoff("23:59"), Some(1439));
        for bad in ["24:00", "12:60", "9:00", "14", "14:00:00", "ab:cd", ""] {
            assert_eq!(parse_cutoff(bad), None, "{bad}");
        }
    }
}
