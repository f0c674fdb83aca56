//! plaid_sync: keeps Plaid Items, Accounts and Transactions in sync inside PostgreSQL.
//!
//! Reading order, following the data: `api.rs` (SQL functions) → `validate.rs` → `inbox.rs`
//! (rows in) → `worker.rs` (the loop) → `jobs.rs` (claim, run, record) → `sync/` (what each job
//! does) → `plaid/` (the HTTP client) → `store.rs` (the rows it writes).
//! `crypto.rs` seals access tokens; `gucs.rs` holds the settings; `webhook.rs` verifies Plaid.

use pgrx::prelude::*;

pub mod api;
pub mod crypto;
pub mod error;
pub mod gucs;
pub mod inbox;
pub mod jobs;
pub mod plaid;
pub mod store;
pub mod sync;
pub mod validate;
pub mod webhook;
pub mod worker;

pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // No workers, and nothing of ours running, while pg_upgrade moves the cluster.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    gucs::init();
    worker::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'plaid_sync'",
            "plaid_sync.workers = 0",
            "plaid_sync.encryption_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'",
        ]
    }
}
