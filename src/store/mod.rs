//! The rows a sync writes, one file per table (each the only place that writes it). Plaid's
//! JSON goes into Postgres as text and is taken apart in SQL, so `numeric` columns get the
//! exact digits Plaid sent. `items.rs` the Items, `token.rs` an access token's life (sealed,
//! opened, rotated, destroyed), `institutions.rs` the institutions cache, `accounts.rs`
//! accounts and balance snapshots, `pages.rs` a sync's staged pages and its last,
//! `transactions.rs` `transaction_rows` (the apply by SQL, or by COPY for a run of new
//! transactions), `rejects.rs` what an apply left out, `runs.rs` `sync_runs`, `paid_calls.rs` the calls Plaid bills per request,
//! `changes.rs` the NOTIFY sent when an apply commits, `deliveries.rs` the notification
//! webhooks to the backend, `products.rs` each Item's products,
//! `recurring.rs` recurring streams, `liabilities.rs` liabilities, `investments.rs`
//! securities, holdings and investment transactions, `webhook_keys.rs` Plaid's verification
//! keys, `consent.rs` what ending consent does across them (marked removed, or purged),
//! `history.rs` how long the record of syncs is kept (`plaid_sync.history_retention`), and
//! `duplicates.rs` the check for an Item a user linked twice. (The inbox's rows are
//! `crate::inbox`'s.)

pub mod accounts;
pub mod changes;
pub mod consent;
pub mod deliveries;
pub mod duplicates;
pub mod history;
pub mod institutions;
pub mod investments;
mod item_events;
pub mod items;
pub mod liabilities;
pub mod pages;
pub mod paid_calls;
pub mod products;
pub mod recurring;
pub mod rejects;
pub mod resync;
pub mod runs;
pub mod token;
pub mod transactions;
pub mod webhook_keys;

pub use accounts::upsert_accounts;
pub use institutions::{institution_cached, store_institution};
pub use items::{name_institution, update_item};
pub use pages::{HeldPage, Last, discard_pages, stage_held, stage_page};
pub use rejects::{Reject, record_rejects};
pub use transactions::{apply_accounts, apply_pages, remove_unseen};

/// Runs an apply whose final SELECT is `COUNTS` (over CTEs `up`, whose rows say `inserted`,
/// and `gone`): rows added, changed and removed.
pub(crate) fn counted(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> (i32, i32, i32) {
    crate::database::row_text(sql, args, |r| {
        Some((
            r.get::<i32>(1).ok().flatten().unwrap_or(0),
            r.get::<i32>(2).ok().flatten().unwrap_or(0),
            r.get::<i32>(3).ok().flatten().unwrap_or(0),
        ))
    })
    .unwrap_or((0, 0, 0))
}

/// The (id, item_id) pairs a retention query selects: what it then deletes by id, naming the
/// Items so that on a distributed install the delete goes to their shards only.
pub(crate) fn old_rows(
    sql: &'static str,
    args: &[pgrx::datum::DatumWithOid],
) -> (Vec<i64>, Vec<String>) {
    crate::database::rows(sql, args, |r| {
        Some((r.get::<i64>(1).ok()??, r.get::<String>(2).ok()??))
    })
    .into_iter()
    .unzip()
}

/// The final SELECT of an apply counted by `counted`.
pub(crate) const COUNTS: &str = "
    SELECT (SELECT count(*) FILTER (WHERE inserted) FROM up)::int,
           (SELECT count(*) FILTER (WHERE NOT inserted) FROM up)::int,
           (SELECT count(*) FROM gone)::int";

#[cfg(test)]
#[path = "mod_tests.rs"]
mod unit;
