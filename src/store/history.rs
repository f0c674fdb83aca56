//! `plaid_sync.history_retention`: the record of what plaid_sync did (sync runs with their
//! staged pages, resolved rejects, paid calls) is kept as long as asked and no longer, so the
//! non-data tables grow with the Items, not with the syncs. Worker 0's maintenance calls it
//! every few seconds; each table's home deletes a small batch that skips rows a sync holds.
//! Data rows (transactions, accounts, balances, products) are never touched here.

use crate::gucs;
use crate::store::{paid_calls, rejects, runs};

/// Rows per table per batch: a batch is a few milliseconds. A round goes on with more batches
/// while a table had a full one, for at most `ROUND`, so deletions keep up with however many
/// syncs a second the server runs and still leave the worker to its jobs.
const BATCH: i32 = 1000;
const ROUND: std::time::Duration = std::time::Duration::from_millis(250);

/// One round of deletions; how many rows went from each table (runs, rejects, paid calls).
pub fn prune() -> (i64, i64, i64) {
    let retention = gucs::history_retention_s();
    let mut gone = (0, 0, 0);
    if retention == 0 {
        return gone;
    }
    let start = std::time::Instant::now();
    loop {
        // Rejects first: a run is kept while a reject points at it.
        let rejects = rejects::prune_resolved(retention, BATCH);
        let runs = runs::prune(retention, BATCH);
        let paid = paid_calls::prune(retention, BATCH);
        gone = (gone.0 + runs, gone.1 + rejects, gone.2 + paid);
        let full = [runs, rejects, paid].contains(&(BATCH as i64));
        if !full || start.elapsed() >= ROUND {
            return gone;
        }
    }
}
