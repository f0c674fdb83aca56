//! An Item's events (status, new accounts, purge) on a distributed install. On one server the
//! `item_events` trigger sends them (sql/schema.sql); Citus would fire that trigger on the
//! worker that holds the Item's shard, away from the deliveries queue and NOTIFY's listeners,
//! so `plaid_sync.distribute()` drops it and every statement plaid_sync runs on an Item's row
//! goes through here: its state read before and after, in the same transaction, and the events
//! sent by the trigger's own comparison (`plaid_sync.send_item_events`).

use crate::database::{citus_places, one, run};

/// Runs `f`, which may change the Item's row, and sends the events it caused when no trigger
/// will. On one server this is one catalog read more than `f`.
pub fn evented<R>(item_id: &str, f: impl FnOnce() -> R) -> R {
    if !citus_places("plaid_sync.items") {
        return f();
    }
    // Locked, so no other statement changes the Item between the two reads.
    let before = state(item_id, true);
    let r = f();
    if let (Some(old), Some(new)) = (before, state(item_id, false)) {
        run(
            "SELECT plaid_sync.send_item_events($1, $2::jsonb, $3::jsonb)",
            &[item_id.into(), old.into(), new.into()],
        );
    }
    r
}

/// A statement that may change what an Item's events report.
pub fn run_evented(item_id: &str, sql: &'static str, args: &[pgrx::datum::DatumWithOid]) {
    evented(item_id, || run(sql, args));
}

fn state(item_id: &str, lock: bool) -> Option<String> {
    macro_rules! read {
        ($lock:literal) => {
            concat!(
                "SELECT plaid_sync.item_event_state(status, error, consent_expiration_time, data, purged_at)::text
                   FROM plaid_sync.items WHERE item_id = $1",
                $lock
            )
        };
    }
    let sql = if lock {
        read!(" FOR UPDATE")
    } else {
        read!("")
    };
    one::<String>(sql, &[item_id.into()])
}
