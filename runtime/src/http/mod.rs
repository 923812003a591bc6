//! The HTTP front door shared by every stage; see [`front`] for the protections and
//! [`error`] for the one error answer.

pub mod auth;
mod document;
mod error;
pub mod front;

pub use error::{ApiError, parse_json, query_pairs};
pub use front::{AddressLimiter, ClientAddress, FrontConfig};
