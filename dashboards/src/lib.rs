//! dashboards: merchant analytics in the browser (sales, funnel, top products, delivery
//! performance, low stock), each merchant seeing only its own numbers. Nothing is implemented
//! yet.
