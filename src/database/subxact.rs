//! A statement group in a subtransaction, as PL/pgSQL's EXCEPTION block runs one: an ERROR
//! inside rolls back only the group and comes back as its message.

use std::panic::AssertUnwindSafe;

use pgrx::PgTryBuilder;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;

/// Runs `f` in a subtransaction of the open transaction. With `keep`, a group that succeeds
/// is kept; without, it is always rolled back (a probe). An ERROR or panic is rolled back and
/// returned as its message.
pub fn subtransaction<R>(keep: bool, f: impl FnOnce() -> R) -> Result<R, String> {
    super::in_transaction("subtransaction");
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
    }
    let result = PgTryBuilder::new(AssertUnwindSafe(|| Ok(f())))
        .catch_others(|e| Err(message(&e)))
        .execute();
    unsafe {
        if result.is_ok() && keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    result
}

/// The message of a caught ERROR or panic.
pub fn message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}
