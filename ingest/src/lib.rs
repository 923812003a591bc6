//! ingest: where events enter shopstream. It will own the transactional orders core (order
//! state machine, refund policy, hyperlocal radius, stock reservations, payments through a
//! `PaymentProvider`, SQLite/PostgreSQL storage with a transactional outbox and its relay),
//! customer notifications, the `POST /v1/events` click/search collector and the importer of the
//! UCI Online Retail data set. Nothing is implemented yet; see the orders-core issue.
