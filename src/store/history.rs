//! `plaid_sync.history_retention`: the record of what plaid_sync did (sync runs with their
//! staged pages, resolved rejects, paid calls) is kept as long as asked and no longer, so the
//! non-data tables grow with the Items, not with the syncs. Worker 0's maintenance calls it
//! every few seconds; each table's home deletes a small batch that skips rows a sync holds.
//! Data rows (transactions, accounts, balances, products) are never touched here.

use crate::gucs;
use crate::store::{paid_calls, rejects, runs};

/// Rows per table per round: a round is a few milliseconds, and rounds come every 5 s, so
/// up to 17 million rows a day per table go.
const BATCH: i32 = 1000;

/// One round of deletions; how many rows went from each table (runs, rejects, paid calls).
pub fn prune() -> (i64, i64, i64) {
    let retention = gucs::history_retention_s();
    if retention == 0 {
        return (0, 0, 0);
    }
    // Rejects first: a run is kept while a reject points at it.
    let rejects = rejects::prune_resolved(retention, BATCH);
    let runs = runs::prune(retention, BATCH);
    let paid = paid_calls::prune(retention, BATCH);
    (runs, rejects, paid)
}
