//! Calls Plaid bills per request (`/transactions/refresh`), one row each, booked when the
//! backend asks for one. The daily budgets count these rows, so a refused request leaves none.

use crate::database::{one, run};
use crate::error::{Error, Result};

/// Advisory-lock key under which budgets are checked and booked, so two concurrent requests
/// cannot both take the last call of a budget.
const BUDGET_LOCK: i64 = 0x504c_4144_5041_4944; // "PLADPAID"

/// Books the call job `inbox_id` will make, if both budgets (calls in any 24 hours, per Item
/// and for the server; 0 refuses all) have room. A job already booked (a request folded into
/// one still waiting) costs nothing more.
pub fn book(
    item_id: &str,
    endpoint: &str,
    inbox_id: i64,
    per_item: i32,
    per_server: i32,
) -> Result<()> {
    run("SELECT pg_advisory_xact_lock($1)", &[BUDGET_LOCK.into()]);
    if one::<bool>(
        "SELECT true FROM plaid_sync.paid_calls WHERE inbox_id = $1",
        &[inbox_id.into()],
    )
    .is_some()
    {
        return Ok(());
    }
    let (item_calls, server_calls) = crate::database::row(
        "SELECT count(*) FILTER (WHERE item_id = $1), count(*) FROM plaid_sync.paid_calls
          WHERE endpoint = $2 AND requested_at > now() - interval '1 day'",
        &[item_id.into(), endpoint.into()],
        |r| {
            Some((
                r.get::<i64>(1).ok().flatten().unwrap_or(0),
                r.get::<i64>(2).ok().flatten().unwrap_or(0),
            ))
        },
    )
    .unwrap_or((0, 0));
    if item_calls >= per_item as i64 {
        return Err(Error::OverBudget(format!(
            "Item {item_id} has had {item_calls} {endpoint} calls in the last 24 hours, the most \
             plaid_sync.refreshes_per_item_per_day ({per_item}) allows: each is billed by Plaid"
        )));
    }
    if server_calls >= per_server as i64 {
        return Err(Error::OverBudget(format!(
            "this server has made {server_calls} {endpoint} calls in the last 24 hours, the most \
             plaid_sync.refreshes_per_day ({per_server}) allows: each is billed by Plaid"
        )));
    }
    run(
        "INSERT INTO plaid_sync.paid_calls (item_id, endpoint, inbox_id) VALUES ($1, $2, $3)",
        &[item_id.into(), endpoint.into(), inbox_id.into()],
    );
    Ok(())
}

/// Marks the booking as called, before the call: committed on its own by a worker, so a job
/// run again (a crash, a lost record) finds it marked and does not call Plaid twice. False
/// when it was marked already.
pub fn start(inbox_id: i64) -> bool {
    one::<bool>(
        "UPDATE plaid_sync.paid_calls SET called_at = now(), outcome = 'calling'
          WHERE inbox_id = $1 AND called_at IS NULL RETURNING true",
        &[inbox_id.into()],
    )
    .is_some()
}

/// Plaid refused the call with an error it does not bill (5xx, 429): the mark is taken back,
/// so the job's retry may call again. The error is kept until then.
pub fn unmark(inbox_id: i64, request_id: Option<&str>, error: Option<&str>) {
    run(
        "UPDATE plaid_sync.paid_calls SET called_at = NULL, outcome = 'retry', request_id = $2, error = $3
          WHERE inbox_id = $1",
        &[inbox_id.into(), request_id.into(), error.into()],
    );
}

/// What came of the call a job made: `request_id` when Plaid answered it, the outcome label.
pub fn record(inbox_id: i64, request_id: Option<&str>, outcome: &str, error: Option<&str>) {
    run(
        "UPDATE plaid_sync.paid_calls SET called_at = now(), request_id = $2, outcome = $3, error = $4
          WHERE inbox_id = $1",
        &[inbox_id.into(), request_id.into(), outcome.into(), error.into()],
    );
}

/// The Item's paid calls deleted: a purge (the server's budget forgets them too).
pub fn purge(item_id: &str) {
    run(
        "DELETE FROM plaid_sync.paid_calls WHERE item_id = $1",
        &[item_id.into()],
    );
}

/// Deletes paid calls older than both `retention_s` and the budgets' 24-hour window whose job
/// is over, at most `batch`; how many. The budgets count only the last 24 hours.
pub fn prune(retention_s: i32, batch: i32) -> i64 {
    crate::database::one::<i64>(
        "WITH gone AS (
             DELETE FROM plaid_sync.paid_calls WHERE id IN (
                 SELECT id FROM plaid_sync.paid_calls
                  WHERE requested_at < now() - greatest(make_interval(secs => $1), interval '24 hours')
                    AND outcome IS NOT NULL AND outcome <> 'calling'
                  ORDER BY requested_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING 1)
         SELECT count(*) FROM gone",
        &[retention_s.into(), batch.into()],
    )
    .unwrap_or(0)
}
