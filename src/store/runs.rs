//! `plaid_sync.sync_runs`, one row per sync of an Item's product: opened when the job starts,
//! closed with what came of it. Every statement that writes the table is here.

use crate::database::{one, rows, run};

/// Opens a run for job `inbox_id`; its id. `product` is Plaid's name (transactions when None,
/// the column's default).
pub fn start(item_id: &str, inbox_id: i64, trigger: &str, product: Option<&str>) -> i64 {
    one::<i64>(
        "INSERT INTO plaid_sync.sync_runs (item_id, inbox_id, trigger, product)
         VALUES ($1, $2, $3, coalesce($4, 'transactions')) RETURNING id",
        &[
            item_id.into(),
            inbox_id.into(),
            trigger.into(),
            product.into(),
        ],
    )
    .expect("sync run id")
}

/// Pages read so far and restarts of the page loop, while a run goes on.
pub fn record_pages(item_id: &str, run_id: i64, pages: u32, restarts: u32) {
    run(
        "UPDATE plaid_sync.sync_runs SET pages = $2, restarts = $3 WHERE id = $1 AND item_id = $4",
        &[
            run_id.into(),
            (pages as i32).into(),
            (restarts as i32).into(),
            item_id.into(),
        ],
    );
}

/// What a finished run says of itself.
pub struct Finished<'a> {
    pub pages: i32,
    pub restarts: i32,
    pub counts: (i32, i32, i32),
    pub request_ids: &'a [String],
    /// `sync_runs.outcome`: ok, retry, item_error or failed.
    pub outcome: &'a str,
    pub error: Option<&'a str>,
    pub rejected: i32,
    /// 'copy' or 'upsert' for a transactions sync that applied pages.
    pub applied_by: Option<&'a str>,
}

/// Closes a run. Every statement on an Item's rows names the Item: on a distributed install
/// that keeps it on the one shard that holds them (plaid_sync.distribute()).
pub fn finish(item_id: &str, run_id: i64, f: &Finished) {
    run(
        "UPDATE plaid_sync.sync_runs SET finished_at = now(), pages = $2, restarts = $3,
                added = $4, modified = $5, removed = $6, request_ids = $7, outcome = $8, error = $9,
                rejected = $10, applied_by = $11
          WHERE id = $1 AND item_id = $12",
        &[
            run_id.into(),
            f.pages.into(),
            f.restarts.into(),
            f.counts.0.into(),
            f.counts.1.into(),
            f.counts.2.into(),
            f.request_ids.to_vec().into(),
            f.outcome.into(),
            f.error.into(),
            f.rejected.into(),
            f.applied_by.into(),
            item_id.into(),
        ],
    );
}

/// Closes the runs a dead process left open for job `inbox_id` (just claimed again) of
/// `item_id`, and drops their staged pages. A job without an Item opens no run.
pub fn close_abandoned(inbox_id: i64, item_id: Option<&str>) {
    let Some(item_id) = item_id else { return };
    for run_id in abandoned(inbox_id, item_id) {
        super::discard_pages(run_id);
    }
}

fn abandoned(inbox_id: i64, item_id: &str) -> Vec<i64> {
    rows(
        "UPDATE plaid_sync.sync_runs SET outcome = 'failed', finished_at = now(),
                error = 'abandoned: the process running it stopped'
          WHERE item_id = $2 AND inbox_id = $1 AND outcome = 'running' RETURNING id",
        &[inbox_id.into(), item_id.into()],
        |r| r.get::<i64>(1).ok().flatten(),
    )
}

/// The Item's sync runs deleted, and their staged pages: a purge.
pub fn purge(item_id: &str) {
    let ids = crate::database::rows(
        "DELETE FROM plaid_sync.sync_runs WHERE item_id = $1 RETURNING id",
        &[item_id.into()],
        |r| r.get::<i64>(1).ok().flatten(),
    );
    super::pages::discard_pages_of(&ids);
}

/// Deletes finished runs older than `retention_s`, at most `batch`: never an Item's latest
/// run of a product (item_health and a listener catching up read it), nor one a reject still
/// points at (`rejects::prune_resolved` goes first). Their staged pages go too. A finished
/// run is written by no one, so the delete waits for no sync; it is a read and a delete,
/// not a multi-shard SELECT … FOR UPDATE, which a distributed install refuses. How many went.
/// It reads the runs started before the retention (`sync_runs_started_idx`), not the whole
/// window the retention keeps: the cost of a round grows with the Items whose latest run is
/// that old, not with the syncs.
pub fn prune(retention_s: i32, batch: i32) -> i64 {
    let (ids, items) = super::old_rows(
        "SELECT r.id, r.item_id FROM plaid_sync.sync_runs r
          WHERE r.started_at < now() - make_interval(secs => $1)
            AND r.finished_at < now() - make_interval(secs => $1)
            AND EXISTS (SELECT 1 FROM plaid_sync.sync_runs l
                         WHERE l.item_id = r.item_id AND l.product = r.product AND l.id > r.id)
            AND NOT EXISTS (SELECT 1 FROM plaid_sync.sync_rejects s
                             WHERE s.item_id = r.item_id AND s.sync_run_id = r.id)
          ORDER BY r.started_at LIMIT $2",
        &[retention_s.into(), batch.into()],
    );
    if ids.is_empty() {
        return 0;
    }
    super::pages::discard_pages_of(&ids);
    one::<i64>(
        // id alone picks the rows; item_id = ANY lets Citus send the delete to their shards only.
        "WITH gone AS (DELETE FROM plaid_sync.sync_runs
                        WHERE id = ANY($1) AND item_id = ANY($2) RETURNING 1)
         SELECT count(*) FROM gone",
        &[ids.into(), items.into()],
    )
    .unwrap_or(0)
}
