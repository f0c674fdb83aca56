//! `Error` (src/error.rs) raised as a Postgres ERROR with its documented SQLSTATE.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::{Error, Result};

/// Raises `e` as an ERROR with its documented SQLSTATE (`Error::sqlstate`).
pub fn raise(e: Error) -> ! {
    let mut report = ErrorReport::new(code(e.sqlstate()), e.message().to_string(), "plaid_sync");
    if let Some(hint) = e.hint() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A five-character SQLSTATE as Postgres packs it (`MAKE_SQLSTATE`: six bits a character).
pub fn code(sqlstate: &str) -> PgSqlErrorCode {
    let packed = sqlstate.bytes().enumerate().fold(0i32, |acc, (i, c)| {
        acc | ((((c - b'0') & 0x3f) as i32) << (6 * i))
    });
    PgSqlErrorCode::from(packed)
}

/// The value, or the error raised.
pub fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| raise(e))
}

#[cfg(test)]
#[path = "raise_tests.rs"]
mod unit;
