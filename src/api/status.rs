//! The status functions: the library's version and the shared rate limiter's view of Plaid
//! calls (read by the `sync_progress` view).

use pgrx::prelude::*;

use crate::gucs;

/// The version of the loaded library. `pg_extension.extversion` is the version of the SQL
/// objects; the two differ between installing a new package and `ALTER EXTENSION UPDATE`.
#[pg_extern(security_definer, stable, parallel_safe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn version() -> &'static str {
    crate::database::LIBRARY_VERSION
}

/// Plaid calls per endpoint, as the shared rate limiter sees them: the limits in force
/// (per client and per Item, per minute), calls booked in the last minute, calls in flight,
/// 429s in the last hour, and the share of the configured rate in use after 429s.
#[pg_extern(security_definer, volatile, parallel_safe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn plaid_rate_status() -> TableIterator<
    'static,
    (
        name!(endpoint, String),
        name!(per_client_limit, Option<i32>),
        name!(per_item_limit, Option<i32>),
        name!(calls_last_minute, i64),
        name!(in_flight, i32),
        name!(throttled_last_hour, i64),
        name!(rate_share, f64),
    ),
> {
    let limits = crate::plaid::limits::parse(&gucs::rate_limits())
        .unwrap_or_else(|_| crate::plaid::limits::parse("").expect("the default table parses"));
    let rows: Vec<_> = crate::pace::status()
        .into_iter()
        .zip(limits)
        .map(
            |((endpoint, calls, in_flight, throttled, share), (client, item))| {
                (
                    endpoint.to_string(),
                    client.map(|n| n as i32),
                    item.map(|n| n as i32),
                    calls,
                    in_flight,
                    throttled,
                    share,
                )
            },
        )
        .collect();
    TableIterator::new(rows)
}

/// Counters since the server started (or, without preloading, in this backend): jobs
/// finished, Plaid calls made, access tokens decrypted. A job decrypts its Item's token once,
/// however many calls it makes.
#[pg_extern(security_definer, volatile, parallel_safe)]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn plaid_counters() -> TableIterator<'static, (name!(counter, String), name!(value, i64))> {
    TableIterator::new(
        crate::tally::read()
            .into_iter()
            .map(|(name, n)| (name.to_string(), n)),
    )
}
