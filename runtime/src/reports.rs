//! A merchant's live analytics as the analytics stage answers them, and its trending products
//! as the trending stage ranks them: traits the binary injects into the dashboards, so a page
//! shows the numbers `GET /v1/merchants/{id}/analytics/{metric}` and `GET
//! /v1/trending?scope=merchant` answer without reaching into either stage.

use std::sync::Arc;

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

pub trait ShopTrending: Send + Sync + 'static {
    /// The shop's `limit` top products in the default (first) window, as `GET
    /// /v1/trending?scope=merchant&key=<merchant_id>` answers them: `window_ms`,
    /// `window_end_ms`, `products` and `rising`, each product with its title, score, views,
    /// carts, orders and `previous_score`.
    fn trending(&self, merchant_id: &str, limit: usize) -> Result<serde_json::Value, ApiError>;
}

/// What the dashboards draw a shop from; each is absent when this process runs no such stage.
#[derive(Clone, Default)]
pub struct ShopSources {
    pub reports: Option<Arc<dyn ShopReports>>,
    pub trending: Option<Arc<dyn ShopTrending>>,
}

impl std::fmt::Debug for ShopSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopSources")
            .field("reports", &self.reports.is_some())
            .field("trending", &self.trending.is_some())
            .finish()
    }
}
