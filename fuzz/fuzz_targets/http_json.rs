//! The `/v1` request parser on arbitrary bodies, as every JSON route uses it: each body parses
//! or is refused as `invalid_json` with a message, never a panic or another code.
#![no_main]

use ingest::http::requests::{
    AddressRequest, CancelRequest, KeyRequest, MerchantRequest, PlaceOrder, ProductRequest,
    RefundRequest, ShipRequest, StockRequest, WarehouseRequest,
};
use ingest::http::{ApiError, parse_json};
use libfuzzer_sys::fuzz_target;
use model::api::ErrorCode;
use serde::de::DeserializeOwned;

fn check<T: DeserializeOwned>(body: &[u8]) {
    if let Err(error) = parse_json::<T>(body) {
        refused_properly(&error);
    }
}

fn refused_properly(error: &ApiError) {
    assert_eq!(error.code, ErrorCode::InvalidJson, "{}", error.message);
    assert!(
        !error.message.is_empty(),
        "an invalid_json refusal without a message"
    );
}

fuzz_target!(|body: &[u8]| {
    check::<PlaceOrder>(body);
    check::<MerchantRequest>(body);
    check::<KeyRequest>(body);
    check::<ProductRequest>(body);
    check::<StockRequest>(body);
    check::<CancelRequest>(body);
    check::<AddressRequest>(body);
    check::<RefundRequest>(body);
    check::<ShipRequest>(body);
    check::<WarehouseRequest>(body);
});
