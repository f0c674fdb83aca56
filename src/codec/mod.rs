//! The row codec: Plaid's JSON as plaid_sync's rows store it. A page read once
//! (`sync_page`), made storable (`storable`), each transaction split (`split`) by the typed columns (`columns`) and marked for
//! the SQL apply (`lean`), and runs of new ones written as COPY text (`copy_text`). No HTTP and
//! no pgrx in here: all of it is unit-tested with plain `cargo test`.

pub mod columns;
pub mod copy_text;
pub mod lean;
pub mod split;
pub mod storable;
pub mod sync_page;
