//! Change notices: after each applied sync, `NOTIFY plaid_sync` with what changed, sent by
//! Postgres when the apply commits (and never if it rolls back). The payload names rows, never
//! a token: `{"type": "sync", "item_id", "product", "sync_run_id", "added", "modified",
//! "removed"}`. An Item's events (`"type": "item"`) go out on the same channel from the
//! `item_events` trigger on `plaid_sync.items` (sql/schema.sql), whichever statement makes them.

use pgrx::prelude::*;

pub const CHANNEL: &str = "plaid_sync";

pub fn notify(
    item_id: &str,
    product: &str,
    sync_run_id: i64,
    added: i32,
    modified: i32,
    removed: i32,
) {
    Spi::run_with_args(
        "SELECT pg_notify($1, json_build_object('type', 'sync', 'item_id', $2::text, 'product', $3::text,
                'sync_run_id', $4::bigint, 'added', $5::int, 'modified', $6::int, 'removed', $7::int)::text)",
        &[
            CHANNEL.into(),
            item_id.into(),
            product.into(),
            sync_run_id.into(),
            added.into(),
            modified.into(),
            removed.into(),
        ],
    )
    .expect("change notice");
}
