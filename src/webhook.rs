//! Plaid webhook verification helpers that need Postgres (the JWT checks themselves live in
//! `plaid/jwt.rs`).

use pgrx::prelude::*;

/// PostgREST (and Supabase) put the HTTP request headers in the `request.headers` setting as
/// a JSON object with lower-case names; use its `plaid-verification` when the caller passed
/// none.
pub fn header_from_postgrest() -> Option<String> {
    let headers = Spi::get_one::<String>("SELECT current_setting('request.headers', true)")
        .ok()
        .flatten()?;
    let parsed: serde_json::Value = serde_json::from_str(&headers).ok()?;
    parsed
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("plaid-verification"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}
