//! Plaid: the HTTP client, its typed errors, and webhook JWT checks. No pgrx in here, so all
//! of it is unit-tested with plain `cargo test`.

pub mod client;
pub mod copy_text;
pub mod error;
pub mod jwt;
pub mod lean;
pub mod limits;
pub mod storable;
pub mod sync_page;

pub use client::{Client, Config, Pacer, Response};
pub use error::{Class, PlaidError, ProductState};
