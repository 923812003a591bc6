//! A merchant's live analytics as the analytics stage answers them: a trait the binary
//! injects into the dashboards, so a page shows the numbers `GET
//! /v1/merchants/{id}/analytics/{metric}` answers without reaching into the stage.

use crate::http::ApiError;

pub trait ShopReports: Send + Sync + 'static {
    /// The body the analytics route answers for `metric` of `merchant_id` with the query
    /// string `query` (`from`, `to`, `grain`, `limit`). The caller has already been allowed
    /// to read that shop; errors carry the route's codes and messages.
    fn report(
        &self,
        merchant_id: &str,
        metric: &str,
        query: Option<&str>,
    ) -> Result<serde_json::Value, ApiError>;

    /// The body the alerts route answers for `merchant_id`: its low-stock alerts and what
    /// runs low now. A shop no event has named has none (not an error).
    fn alerts(&self, merchant_id: &str) -> Result<serde_json::Value, ApiError>;

    /// The earliest instant (UTC ms) the answers cover, once any event has been seen: a
    /// range starting before it is refused, so a page clips its ranges to it.
    fn live_from(&self) -> Option<i64>;
}
