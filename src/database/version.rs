//! The library's version against the SQL objects' (`pg_extension.extversion`). They differ
//! after a new package is installed and the server restarted, until `ALTER EXTENSION
//! plaid_sync UPDATE` runs; meanwhile nothing may run SQL written for the other version.

use crate::error::{Error, Result};

/// The version of this library, as `plaid_sync.version()` reports it.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The installed SQL objects' version in this database, or None without the extension.
pub fn sql_version() -> Option<String> {
    super::one::<String>(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'plaid_sync'",
        &[],
    )
}

thread_local! {
    /// When the SQL objects were last seen to be this library's version: a worker woken by
    /// every commit looks again at most once a second (versions change only by ALTER
    /// EXTENSION, which the workers then notice within that second).
    static CURRENT_AT: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

pub fn sql_is_current_recently() -> bool {
    CURRENT_AT.with(|c| {
        c.get()
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
    })
}

pub fn sql_is_current_now() {
    CURRENT_AT.with(|c| c.set(Some(std::time::Instant::now())));
}

/// Forgets that the SQL objects were current: a step failed, and the extension may have been
/// dropped or changed since it was last looked up.
pub fn sql_version_unknown() {
    CURRENT_AT.with(|c| c.set(None));
}

/// Whether the SQL objects are this library's version (looked up at most once a second while
/// they are): for an entry point that keeps working meanwhile, in the older objects' shape.
pub fn sql_is_current() -> bool {
    if sql_is_current_recently() {
        return true;
    }
    let current = sql_version().is_none_or(|v| v == LIBRARY_VERSION);
    if current {
        sql_is_current_now();
    }
    current
}

/// What to do about database `db`, whose SQL objects are `sql`.
pub fn skew_message(sql: &str, db: &str) -> String {
    format!(
        "plaid_sync's library is version {LIBRARY_VERSION} but its SQL objects in database \"{db}\" \
         are version {sql}: run ALTER EXTENSION plaid_sync UPDATE in that database"
    )
}

/// 55000 with the fix when the SQL objects are not this library's version (looked up at
/// most once a second while they are).
pub fn require_current_sql() -> Result<()> {
    if sql_is_current() {
        return Ok(());
    }
    let sql = sql_version().unwrap_or_default();
    // In a transaction here, so the catalog can name the database.
    let db = unsafe {
        std::ffi::CStr::from_ptr(pgrx::pg_sys::get_database_name(pgrx::pg_sys::MyDatabaseId))
    };
    Err(Error::not_configured(skew_message(
        &sql,
        &db.to_string_lossy(),
    )))
}
