//! `Error` (src/error.rs) raised as a Postgres ERROR with its documented SQLSTATE.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::{Error, Result};

/// Raises `e` as an ERROR with its documented SQLSTATE.
pub fn raise(e: Error) -> ! {
    let code = match e {
        Error::InvalidParameter(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        Error::InvalidJson(_) => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        Error::Privilege(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        Error::NotConfigured(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        Error::Retry(_) => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        Error::OverBudget(_) => PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
    };
    ErrorReport::new(code, e.message().to_string(), "plaid_sync").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The value, or the error raised.
pub fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| raise(e))
}
