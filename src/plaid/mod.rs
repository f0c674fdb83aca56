//! Plaid: the HTTP client, its typed errors, its rate limits, webhook JWT checks, and the
//! bodies of `/transactions/sync` and `/link/token/create` (what the rows make of Plaid's
//! JSON is `crate::codec`). No pgrx in here, so all
//! of it is unit-tested with plain `cargo test`.

pub mod client;
pub mod error;
pub mod jwt;
pub mod limits;
pub mod link_request;
pub mod sync_request;

pub use client::{Client, Config, Pacer, Response};
pub use error::{Class, PlaidError, ProductState};
pub use link_request::LinkSettings;
pub use sync_request::SyncOptions;
