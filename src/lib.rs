//! plaid_sync: keeps Plaid Items, Accounts and Transactions in sync inside PostgreSQL.
//!
//! Layers, each using only those below it, in the order the data moves:
//! - entry points: `api/` (the SQL functions), `worker.rs` (the loop) and `listener.rs` (the
//!   HTTP listener's worker);
//! - what jobs do: `runner.rs` (claim, Item lock, record, `plaid_process_inbox`), `route.rs`
//!   (which job takes which row), `job_threads.rs` (jobs in flight, a thread each), `deliverer.rs`
//!   (notification webhooks in flight), `sync/` (Items,
//!   transactions, recurring streams, refreshes), `webhook.rs` (verification glue);
//! - the rows: `inbox.rs` (notices and webhooks in, jobs out), `store/` (Items, accounts,
//!   transactions, products, recurring streams, paid calls, change notices);
//! - the wake-up, pacing and counters: `wake.rs` (shared-memory latches), `pace.rs` (the shared
//!   rate limiter), `tally.rs` (jobs, Plaid calls and token decrypts since the server started);
//! - the database layer: `database/` (SPI, kept plans, the step wrapper `db`, SQLSTATEs), `gucs/` (settings);
//! - the pure core, no pgrx: `validate.rs`, `error.rs`, `job.rs`, `crypto.rs`, `plaid/` (the HTTP
//!   client), `codec/` (Plaid's JSON as the rows store it), `http/` (the listener's server),
//!   `delivery.rs` (notification signatures and backoff).

use pgrx::prelude::*;

// The pure core.
pub mod codec;
pub mod crypto;
pub mod delivery;
pub mod error;
pub mod http;
pub mod job;
pub mod plaid;
pub mod validate;
// The database layer and shared memory (wake-ups, pacing, counters, busy Items).
pub mod busy_items;
pub mod database;
pub mod gucs;
pub mod pace;
pub mod tally;
pub mod wake;
// The rows.
pub mod inbox;
pub mod store;
// What jobs do.
pub mod deliverer;
pub mod job_threads;
pub mod route;
pub mod runner;
pub mod sync;
pub mod webhook;
// The entry points.
pub mod api;
pub mod listener;
pub mod worker;

pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../sql/products.sql",
    name = "products",
    requires = ["schema"]
);
extension_sql_file!(
    "../sql/distribute.sql",
    name = "distribute",
    requires = ["products"]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // No workers, and nothing of ours running, while pg_upgrade moves the cluster.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    gucs::init();
    worker::init();
    listener::init();
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
