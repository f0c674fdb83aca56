//! The inbox: every notice and webhook is one row; jobs are claimed from it with a lease.
//! This file holds the SQL that puts rows in; `queue.rs` the SQL that claims and records
//! them; `maintenance.rs` retention and the self-healing resync.

pub mod maintenance;
pub mod queue;

/// The statement that queues a new Item's first sync, to end a statement whose CTE `$cte`
/// returns the new Item's `item_id` (`store::items::announce`: the Item and its first job in
/// one statement, the common case of a notice).
#[macro_export]
macro_rules! queue_first_sync_from {
    ($cte:literal) => {
        concat!(
            "INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, lane)
         SELECT 'backend', 'ITEM', 'CREATED', item_id, 1 FROM ",
            $cte,
            " RETURNING id"
        )
    };
}

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// A backend notice. While an earlier identical notice for the Item still waits, this one is
/// folded into it (its body, e.g. a webhook URL, replaced by the newer one), so repeating a
/// notice never queues the same work twice (the fold keeps the fresher of the two lanes).
/// Returns the inbox id.
///
/// The fold is a lookup, not a unique index (see sql/schema.sql), so it needs the Item's row
/// lock: two notices for one Item then run one after the other, and the second one's lookup,
/// a later statement, sees the first one's row. A claim that takes the queued row meanwhile
/// makes the lookup skip it (FOR UPDATE re-checks the row), and a new row is queued.
pub fn enqueue_notice(
    webhook_type: &str,
    webhook_code: &str,
    item_id: &str,
    body: &str,
    lane: i16,
) -> i64 {
    crate::database::one::<bool>(
        "SELECT true FROM plaid_sync.items WHERE item_id = $1 FOR UPDATE",
        &[item_id.into()],
    );
    let args: [DatumWithOid; 5] = [
        webhook_type.into(),
        webhook_code.into(),
        item_id.into(),
        body.into(),
        lane.into(),
    ];
    let id = crate::database::one::<i64>(
        "WITH queued AS (
             SELECT id FROM plaid_sync.inbox
              WHERE item_id = $3 AND webhook_type = $1 AND webhook_code = $2
                AND source = 'backend' AND status = 'pending' AND attempts = 0
              ORDER BY id LIMIT 1
              FOR UPDATE),
         folded AS (
             UPDATE plaid_sync.inbox q SET body = $4::jsonb, lane = least(q.lane, $5) FROM queued
              WHERE q.id = queued.id RETURNING q.id),
         added AS (
             INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, body, lane)
             SELECT 'backend', $1, $2, $3, $4::jsonb, $5 WHERE NOT EXISTS (SELECT FROM queued)
             RETURNING id)
         SELECT id FROM folded UNION ALL SELECT id FROM added",
        &args,
    )
    .expect("enqueue returns an id");
    crate::wake::wake_on_commit();
    id
}

/// A webhook from Plaid, stored exactly as received; verified before it is acted on. Its
/// `body` stays NULL until then (`webhook::verify_job` fills it in): parsing and storing the
/// JSON twice was a fifth of this entry point's cost, and an unverified body is not data.
pub fn enqueue_webhook(
    webhook_type: &str,
    webhook_code: &str,
    item_id: Option<&str>,
    raw_body: &str,
    plaid_verification: Option<&str>,
) -> i64 {
    let args: [DatumWithOid; 5] = [
        webhook_type.into(),
        webhook_code.into(),
        item_id.into(),
        raw_body.into(),
        plaid_verification.into(),
    ];
    // Until ALTER EXTENSION UPDATE, the 0.1.0 table needs the body as jsonb too: webhooks
    // keep being queued while the workers wait for the update.
    let sql = if crate::database::sql_is_current() {
        "INSERT INTO plaid_sync.inbox
             (source, webhook_type, webhook_code, item_id, body, raw_body, plaid_verification)
         VALUES ('plaid', $1, $2, $3, NULL, $4, $5)
         RETURNING id"
    } else {
        "INSERT INTO plaid_sync.inbox
             (source, webhook_type, webhook_code, item_id, body, raw_body, plaid_verification)
         VALUES ('plaid', $1, $2, $3, $4::jsonb, $4, $5)
         RETURNING id"
    };
    let id = crate::database::one_prepared::<i64>(sql, &[pg_sys::TEXTOID; 5], &args)
        .expect("insert returns an id");
    crate::wake::wake_on_commit();
    id
}

/// Verified webhooks that came before their Item was announced sleep until it is: the Item's
/// first job wakes them (the notice itself stays the two rows it must write).
pub fn wake_waiting_webhooks(item_id: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET run_after = now()
          WHERE item_id = $1 AND status = 'pending' AND source = 'plaid' AND run_after > now()",
        &[item_id.into()],
    );
}

/// The Item is removed: nothing queued for it runs, and a job running for it is done.
pub fn cancel_item_jobs(item_id: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET status = 'done', finished_at = now(),
                last_error = 'cancelled: Item removed'
          WHERE item_id = $1 AND status IN ('pending', 'running')",
        &[item_id.into()],
    );
}

/// A Plaid-origin row verified: it may run, and its body, kept as text until now, becomes its
/// `jsonb`.
pub fn mark_verified(id: i64, verification: &str) {
    crate::database::run(
        "UPDATE plaid_sync.inbox SET verification = $2, body = coalesce(body, raw_body::jsonb)
          WHERE id = $1",
        &[id.into(), verification.into()],
    );
}
