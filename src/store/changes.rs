//! Change notices: after each applied sync, `NOTIFY plaid_sync` with what changed, sent by
//! Postgres when the apply commits (and never if it rolls back). The payload names rows, never
//! a token: `{"type": "sync", "item_id", "product", "sync_run_id", "added", "modified",
//! "removed"}`. An Item's events (`"type": "item"`) go out from the `item_events` trigger on
//! `plaid_sync.items`. Both go through `plaid_sync.send_event` (sql/schema.sql), which also
//! queues a notification webhook when `plaid_sync.notify_url` is set.

use crate::database::run;

pub fn notify(
    item_id: &str,
    product: &str,
    sync_run_id: i64,
    added: i32,
    modified: i32,
    removed: i32,
) {
    run(
        "SELECT plaid_sync.send_event($1, jsonb_build_object('type', 'sync', 'item_id', $1::text,
                'product', $2::text, 'sync_run_id', $3::bigint, 'added', $4::int, 'modified', $5::int,
                'removed', $6::int))",
        &[
            item_id.into(),
            product.into(),
            sync_run_id.into(),
            added.into(),
            modified.into(),
            removed.into(),
        ],
    );
}
