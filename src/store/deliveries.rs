//! `plaid_sync.deliveries`: the notification webhooks to the backend. Rows are written by
//! `plaid_sync.send_event` in the transaction that makes the change (sql/schema.sql); here they
//! are claimed for sending, recorded, sent again on request, and expired.

use crate::database::{one, run};

/// A delivery claimed for sending.
pub struct Claimed {
    pub id: i64,
    pub event_id: String,
    pub body: String,
    /// Tries so far, this one included.
    pub attempts: i32,
}

/// While a delivery is in flight its row is leased for this long: a worker that dies
/// mid-send leaves it due again (at least once).
const LEASE_S: i32 = 120;

/// Up to `n` due deliveries, each its Item's oldest pending one (so an Item's events go out in
/// order, one at a time), leased and counted as a try.
pub fn claim(n: i64) -> Vec<Claimed> {
    crate::database::rows(
        "WITH due AS (
                 SELECT d.id FROM plaid_sync.deliveries d
                  WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                    AND NOT EXISTS (SELECT 1 FROM plaid_sync.deliveries e
                                     WHERE e.item_id = d.item_id AND e.status = 'pending' AND e.id < d.id)
                  ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE plaid_sync.deliveries d
                SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
               FROM due WHERE d.id = due.id
             RETURNING d.id, d.event_id::text,
                       (jsonb_build_object('event_id', d.event_id, 'created_at', d.created_at) || d.event)::text,
                       d.attempts",
        &[n.into(), LEASE_S.into()],
        |r| {
            Some(Claimed {
                id: r.get::<i64>(1).expect("id").expect("not null"),
                event_id: r.get::<String>(2).expect("event_id").expect("not null"),
                body: r.get::<String>(3).expect("body").expect("not null"),
                attempts: r.get::<i32>(4).expect("attempts").expect("not null"),
            })
        },
    )
}

/// The receiver answered 2xx.
pub fn delivered(id: i64) {
    run(
        "UPDATE plaid_sync.deliveries SET status = 'done', delivered_at = now(), last_error = NULL
          WHERE id = $1 AND status = 'pending'",
        &[id.into()],
    );
}

/// A failed try: again after `retry_in_s`, or `dead` once the event is older than `give_up_s`.
pub fn failed(id: i64, error: &str, retry_in_s: f64, give_up_s: i64) {
    run(
        "UPDATE plaid_sync.deliveries
            SET last_error = left($2, 500), next_attempt_at = now() + make_interval(secs => $3),
                status = CASE WHEN created_at < now() - make_interval(secs => $4) THEN 'dead' ELSE 'pending' END
          WHERE id = $1 AND status = 'pending'",
        &[id.into(), error.into(), retry_in_s.into(), (give_up_s as f64).into()],
    );
}

/// `plaid_redeliver`: the delivery goes out again as soon as its Item's earlier ones have;
/// false when there is no such delivery.
pub fn redeliver(id: i64) -> bool {
    one::<i64>(
        "UPDATE plaid_sync.deliveries SET status = 'pending', next_attempt_at = now(), delivered_at = NULL
          WHERE id = $1 RETURNING id",
        &[id.into()],
    )
    .is_some()
}

/// Delivered rows older than `retention_s` (the inbox's `done_retention`), a batch at a time.
pub fn prune(retention_s: i32) {
    if retention_s > 0 {
        run(
            "DELETE FROM plaid_sync.deliveries WHERE id IN (
                 SELECT id FROM plaid_sync.deliveries
                  WHERE status = 'done' AND delivered_at < now() - make_interval(secs => $1)
                  ORDER BY delivered_at LIMIT 1000)",
            &[retention_s.into()],
        );
    }
}
