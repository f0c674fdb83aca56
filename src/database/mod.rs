//! The database layer: SPI helpers with kept plans, the step-in-its-own-transaction wrapper
//! `db`, subtransactions, and errors raised with their SQLSTATE. Everything above talks to Postgres through it.

pub mod bridge;
mod citus;
mod copy;
mod raise;
mod spi;
mod subxact;
mod version;

pub use citus::places as citus_places;
pub use copy::copy_in;
pub use raise::{ok, raise};
pub use spi::{ParsedJson, in_transaction, one, one_text, row, row_text, rows, run, run_text};
pub use subxact::{message, subtransaction};
pub use version::{
    LIBRARY_VERSION, require_current_sql, skew_message, sql_is_current, sql_is_current_now,
    sql_is_current_recently, sql_version, sql_version_unknown,
};

use std::panic::{AssertUnwindSafe, catch_unwind};

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
        worker_transaction(f)
    }
}

/// A step of a worker's own loop (claim, record, maintenance): `db(f)` in a transaction of its
/// own, but an ERROR comes back as its message, the transaction rolled back, instead of
/// ending the worker. The extension can be dropped, or a table locked, under a running worker.
pub fn try_db<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    debug_assert!(!bridge::on_job_thread() && unsafe { !pg_sys::IsTransactionState() });
    match catch_unwind(AssertUnwindSafe(|| worker_transaction(f))) {
        Ok(v) => Ok(v),
        Err(payload) => {
            unsafe {
                pg_sys::FlushErrorState();
                if pg_sys::IsTransactionState() {
                    pg_sys::AbortCurrentTransaction();
                }
            }
            Err(panic_message(payload))
        }
    }
}

/// A transaction of a worker's own. It first takes a share of the lock DROP EXTENSION takes
/// before any of the extension's tables: a DROP then waits for the transaction to end, and the
/// transaction waits for a DROP under way, instead of each holding a table the other wants (a
/// claim reads inbox then items; DROP takes items then inbox) until one is failed as a deadlock.
fn worker_transaction<R>(f: impl FnOnce() -> R) -> R {
    BackgroundWorker::transaction(AssertUnwindSafe(|| {
        unsafe {
            let ext = pg_sys::get_extension_oid(c"plaid_sync".as_ptr(), true);
            if ext != pg_sys::InvalidOid {
                // Taken, it also reads the catalog afresh: a DROP committed meanwhile is seen.
                pg_sys::LockDatabaseObject(
                    pg_sys::ExtensionRelationId,
                    ext,
                    0,
                    pg_sys::AccessShareLock as pg_sys::LOCKMODE,
                );
            }
        }
        f()
    }))
}

/// The message of a caught ERROR or Rust panic.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(e) = payload.downcast_ref::<pg_sys::panic::CaughtError>() {
        return message(e);
    }
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
