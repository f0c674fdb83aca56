//! The database layer: SPI helpers with kept plans, the step-in-its-own-transaction wrapper
//! `db`, subtransactions, and errors raised with their SQLSTATE. Everything above talks to Postgres through it.

pub mod bridge;
mod copy;
mod raise;
mod spi;
mod subxact;
mod version;

pub use copy::copy_in;
pub use raise::{ok, raise};
pub use spi::{ParsedJson, in_transaction, one, one_prepared, run, run_prepared, with_prepared};
pub use subxact::{message, subtransaction};
pub use version::{
    LIBRARY_VERSION, require_current_sql, skew_message, sql_is_current, sql_is_current_now,
    sql_is_current_recently, sql_version,
};

use std::panic::AssertUnwindSafe;

use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;

/// Runs `f` in the open transaction, or (in a worker, between steps) in a new one that
/// commits when `f` returns. On a worker's job thread, the step runs on the main thread.
pub fn db<R>(f: impl FnOnce() -> R) -> R {
    if bridge::on_job_thread() {
        return bridge::run_on_main(|| db(f));
    }
    if unsafe { pg_sys::IsTransactionState() } {
        f()
    } else {
        BackgroundWorker::transaction(AssertUnwindSafe(f))
    }
}
